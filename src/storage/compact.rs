//! Compaction: writing blocks (from the head, from merged blocks, or from a
//! block minus its tombstones), planning which blocks to merge, and the
//! crash-safe directory moves around them.
//!
//! A block is written into `<ulid>.tmp-for-creation`, fsynced, and renamed
//! to `<ulid>`; a block is deleted by renaming it to `<ulid>.tmp-for-deletion`
//! first. [`crate::storage::Db::open`] removes both kinds of leftovers, so a
//! crash at any step leaves either the old blocks or the new one complete.
//! Owns no state: the [`crate::storage::Db`] decides what to compact and
//! swaps its block list; this module must not touch the head's or the WAL's
//! internals.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::model::{HistogramValue, Labels, Sample};
use crate::storage::block::{
    new_ulid, Block, BlockChunk, BlockCompaction, BlockDesc, BlockMeta, BlockWriter, TidemarkMeta,
};
use crate::storage::chunk;
use crate::storage::error::{Error, Result};
use crate::storage::head::HeadChunk;
use crate::storage::tombstones::Intervals;

/// Suffix of a block directory being written.
pub(crate) const TMP_CREATION_SUFFIX: &str = ".tmp-for-creation";
/// Suffix of a block directory being deleted.
pub(crate) const TMP_DELETION_SUFFIX: &str = ".tmp-for-deletion";

/// A test hook called with the name of each step of block writing,
/// compaction, tombstone rewrites, retention deletes and WAL checkpoints;
/// crash tests abort the process there.
pub type CrashHook = fn(&str);

/// One chunk handed to the block writer: borrowed from the head or a block.
#[derive(Clone)]
pub(crate) enum InputChunk {
    Head(HeadChunk),
    Block(BlockChunk),
}

impl InputChunk {
    fn bounds(&self) -> (i64, i64) {
        match self {
            InputChunk::Head(c) => (c.mint, c.maxt),
            InputChunk::Block(c) => (c.mint, c.maxt),
        }
    }

    /// The float samples and histogram samples (one of the two is empty);
    /// a block chunk failing its checksum or decoding fails the compaction
    /// (its data must not be silently dropped).
    fn decode(&self) -> Result<SeriesData> {
        let (encoding, bytes) = match self {
            InputChunk::Head(c) => (c.encoding, &c.bytes[..]),
            InputChunk::Block(c) => match c.data()? {
                (e, bytes) if e.is_histogram() => (e, bytes),
                _ => return Ok((c.samples()?, Vec::new())),
            },
        };
        if encoding.is_histogram() {
            Ok((Vec::new(), chunk::decode_histogram_values(encoding, bytes)?))
        } else {
            Ok((chunk::decode(encoding, bytes)?, Vec::new()))
        }
    }
}

/// One series' data for a block: float samples and histogram samples,
/// each in time order, no timestamp in both.
pub(crate) type SeriesData = (Vec<Sample>, Vec<(i64, HistogramValue)>);

/// What one source holds of a series: its chunks and deleted intervals.
pub(crate) struct InputPart {
    pub(crate) chunks: Vec<InputChunk>,
    pub(crate) deleted: Option<Intervals>,
}

/// One series to write: labels and its parts, oldest source first.
pub(crate) type InputSeries = (Labels, Vec<InputPart>);

/// What a written block is, before its stats are known.
pub(crate) struct BlockPlan {
    pub(crate) min_time: i64,
    /// Exclusive.
    pub(crate) max_time: i64,
    pub(crate) compaction: BlockCompaction,
    /// `meta.json`'s `tidemark.headFloor` (blocks persisted at shutdown and
    /// merges of them; see [`BlockMeta::implied_head_floor`]).
    pub(crate) head_floor: Option<i64>,
}

pub(crate) fn io_err<'a>(
    op: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> Error + 'a {
    move |source| Error::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// Fsyncs a directory so that renames and removals in it are durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("fsync directory", dir))
}

/// Creates `dir` and its missing parents, fsyncing the parent of each
/// directory it creates: a `create_dir_all` alone leaves the new entries
/// in the page cache, and a power cut can take the directory (with every
/// file later made durable inside it) away.
pub(crate) fn create_dir_all_durable(dir: &Path) -> std::io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let parent = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    create_dir_all_durable(parent)?;
    match fs::create_dir(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && dir.is_dir() => return Ok(()),
        Err(e) => return Err(e),
    }
    fs::File::open(parent)?.sync_all()
}

fn hook(h: Option<CrashHook>, step: &str) {
    if let Some(h) = h {
        h(step);
    }
}

/// Writes `series` (sorted by labels) as a new block under `parent` (`kind`
/// names the caller in crash-hook steps: `<kind>-block:<step>`), keeping
/// samples in `[plan.min_time, plan.max_time)` that are not deleted, with
/// identical timestamps from overlapping sources written once (oldest source
/// wins). Returns `None`, leaving nothing behind, when no sample remains.
pub(crate) fn write_block(
    parent: &Path,
    kind: &str,
    plan: BlockPlan,
    series: impl Iterator<Item = Result<InputSeries>>,
    crash: Option<CrashHook>,
) -> Result<Option<BlockMeta>> {
    let ulid = new_ulid();
    let tmp = parent.join(format!("{ulid}{TMP_CREATION_SUFFIX}"));
    hook(crash, &format!("{kind}-block:start"));
    let result = (|| {
        let mut w = BlockWriter::create(&tmp)?;
        let mut any = false;
        for s in series {
            let (labels, parts) = s?;
            let (samples, histograms) = series_samples(&parts, plan.min_time, plan.max_time - 1)?;
            if samples.is_empty() && histograms.is_empty() {
                continue;
            }
            w.add_mixed_series(&labels, &samples, &histograms)?;
            any = true;
        }
        hook(crash, &format!("{kind}-block:series_written"));
        if !any {
            return Ok(None);
        }
        let mut compaction = plan.compaction;
        if compaction.sources.is_empty() {
            // A block written from the head is its own only source.
            compaction.sources.push(ulid.clone());
        }
        let meta = w.finish(BlockMeta {
            ulid: ulid.clone(),
            min_time: plan.min_time,
            max_time: plan.max_time,
            stats: Default::default(),
            compaction,
            tidemark: TidemarkMeta {
                head_floor: plan.head_floor,
            },
            version: 1,
        })?;
        Ok(Some(meta))
    })();
    let meta = match result {
        Ok(Some(m)) => m,
        Ok(None) => {
            let _ = fs::remove_dir_all(&tmp);
            return Ok(None);
        }
        Err(e) => {
            let _ = fs::remove_dir_all(&tmp);
            return Err(e);
        }
    };
    hook(crash, &format!("{kind}-block:finished"));
    let dst = parent.join(&ulid);
    fs::rename(&tmp, &dst).map_err(io_err("rename block into place", &dst))?;
    sync_dir(parent)?;
    hook(crash, &format!("{kind}-block:renamed"));
    Ok(Some(meta))
}

/// The samples of one series for a block covering `[mint, maxt]`: those
/// of every source in the range and not deleted, each timestamp once
/// (where sources overlap, the oldest source's sample, of either kind).
/// The block writer encodes them afresh: head chunks are XOR and compress
/// far better packed, and block chunks being merged are repacked into
/// fewer, larger chunks (histograms too: larger histogram chunks).
fn series_samples(parts: &[InputPart], mint: i64, maxt: i64) -> Result<SeriesData> {
    let mut chunks: Vec<(&InputChunk, Option<&Intervals>, usize)> = parts
        .iter()
        .enumerate()
        .flat_map(|(i, p)| p.chunks.iter().map(move |c| (c, p.deleted.as_ref(), i)))
        .filter(|(c, _, _)| {
            let (lo, hi) = c.bounds();
            hi >= mint && lo <= maxt
        })
        .collect();
    chunks.sort_by_key(|(c, _, _)| c.bounds().0);
    let disjoint = chunks
        .windows(2)
        .all(|w| w[0].0.bounds().1 < w[1].0.bounds().0);
    let keep = |t: i64, deleted: Option<&Intervals>| {
        t >= mint && t <= maxt && !deleted.is_some_and(|d| d.contains(t))
    };
    let mut all: Vec<(usize, Sample)> = Vec::new();
    let mut hists: Vec<(usize, (i64, HistogramValue))> = Vec::new();
    for (c, deleted, source) in chunks {
        let (floats, hs) = c.decode()?;
        all.extend(
            floats
                .into_iter()
                .filter(|s| keep(s.t, deleted))
                .map(|s| (source, s)),
        );
        hists.extend(
            hs.into_iter()
                .filter(|(t, _)| keep(*t, deleted))
                .map(|h| (source, h)),
        );
    }
    if !disjoint {
        all.sort_by_key(|(source, s)| (s.t, *source));
        all.dedup_by_key(|(_, s)| s.t);
        hists.sort_by_key(|(source, (t, _))| (*t, *source));
        hists.dedup_by_key(|(_, (t, _))| *t);
    }
    if !hists.is_empty() && !all.is_empty() {
        // A timestamp held as a float by one source and as a histogram by
        // another: the oldest source's sample, as for one kind.
        let float_at: std::collections::HashMap<i64, usize> =
            all.iter().map(|(src, s)| (s.t, *src)).collect();
        let hist_at: std::collections::HashMap<i64, usize> =
            hists.iter().map(|(src, (t, _))| (*t, *src)).collect();
        all.retain(|(src, s)| hist_at.get(&s.t).is_none_or(|h| src <= h));
        hists.retain(|(src, (t, _))| float_at.get(t).is_none_or(|f| src < f));
    }
    Ok((
        all.into_iter().map(|(_, s)| s).collect(),
        hists.into_iter().map(|(_, h)| h).collect(),
    ))
}

/// Merges the series of `blocks` (each sorted by labels) into one sorted
/// stream, one entry per label set with a part per block holding it.
pub(crate) fn merged_series(
    blocks: &[Arc<Block>],
) -> impl Iterator<Item = Result<InputSeries>> + '_ {
    let mut iters: Vec<_> = blocks
        .iter()
        .map(|b| {
            let tombstones = b.tombstones();
            b.series()
                .map(move |r| {
                    r.map(|s| {
                        let deleted = tombstones.get(s.id).cloned();
                        (s.labels, s.chunks, deleted)
                    })
                })
                .peekable()
        })
        .collect();
    std::iter::from_fn(move || {
        // Errors surface first, in block order.
        for it in iters.iter_mut() {
            if matches!(it.peek(), Some(Err(_))) {
                if let Some(Err(e)) = it.next() {
                    return Some(Err(Error::from(e)));
                }
            }
        }
        let min = iters
            .iter_mut()
            .filter_map(|it| match it.peek() {
                Some(Ok((l, _, _))) => Some(l.clone()),
                _ => None,
            })
            .min()?;
        let mut parts = Vec::new();
        for it in iters.iter_mut() {
            if matches!(it.peek(), Some(Ok((l, _, _))) if *l == min) {
                if let Some(Ok((_, chunks, deleted))) = it.next() {
                    parts.push(InputPart {
                        chunks: chunks.into_iter().map(InputChunk::Block).collect(),
                        deleted,
                    });
                }
            }
        }
        Some(Ok((min, parts)))
    })
}

/// Metadata of a block merged from `parents`.
pub(crate) fn merged_plan(parents: &[Arc<Block>]) -> BlockPlan {
    let metas: Vec<&BlockMeta> = parents.iter().map(|b| b.meta()).collect();
    let mut sources: Vec<String> = metas
        .iter()
        .flat_map(|m| m.compaction.sources.iter().cloned())
        .collect();
    sources.sort();
    sources.dedup();
    let max_time = metas.iter().map(|m| m.max_time).max().unwrap_or(0);
    BlockPlan {
        min_time: metas.iter().map(|m| m.min_time).min().unwrap_or(0),
        max_time,
        head_floor: merged_head_floor(&metas, max_time),
        compaction: BlockCompaction {
            level: metas.iter().map(|m| m.compaction.level).max().unwrap_or(0) + 1,
            sources,
            parents: metas
                .iter()
                .map(|m| BlockDesc {
                    ulid: m.ulid.clone(),
                    min_time: m.min_time,
                    max_time: m.max_time,
                })
                .collect(),
        },
    }
}

/// The head floor a merge of `parents` implies (the highest one a parent
/// implies, [`BlockMeta::implied_head_floor`]), recorded only when it is
/// below the merged block's end `max_time`: a parent persisted at shutdown
/// keeps lowering the floor the next open restores.
fn merged_head_floor(parents: &[&BlockMeta], max_time: i64) -> Option<i64> {
    parents
        .iter()
        .map(|m| m.implied_head_floor())
        .max()
        .filter(|&f| f < max_time)
}

/// The block ranges compaction builds, smallest first: the head's block
/// range times powers of three (2 h, 6 h, 18 h, ...), up to `max`.
pub(crate) fn ranges(block_range: i64, max: i64) -> Vec<i64> {
    let mut out = vec![block_range];
    let mut r = block_range;
    while let Some(next) = r.checked_mul(3) {
        if next > max {
            break;
        }
        out.push(next);
        r = next;
    }
    out
}

/// Picks the blocks to merge next, as indexes into `metas` (sorted by
/// min time), following Prometheus's leveled planner: overlapping blocks
/// first; then, leaving out the newest block, the first aligned range of the
/// larger sizes holding more than one block that is complete (its end is
/// not after the newest considered block's end, or its blocks span it).
pub(crate) fn plan(metas: &[&BlockMeta], ranges: &[i64]) -> Option<Vec<usize>> {
    // Overlaps: any block starting before the previous one ends.
    let mut group: Vec<usize> = Vec::new();
    let mut end = i64::MIN;
    for (i, m) in metas.iter().enumerate() {
        if !group.is_empty() && m.min_time < end {
            group.push(i);
            end = end.max(m.max_time);
            continue;
        }
        if group.len() > 1 {
            return Some(group);
        }
        group = vec![i];
        end = m.max_time;
    }
    if group.len() > 1 {
        return Some(group);
    }
    let considered = metas.len().checked_sub(1)?;
    let high = metas[..considered].iter().map(|m| m.max_time).max()?;
    for &r in ranges.iter().skip(1) {
        let mut i = 0;
        while i < considered {
            let start = metas[i].min_time.div_euclid(r).saturating_mul(r);
            let mut j = i;
            while j < considered
                && metas[j].min_time >= start
                && metas[j].max_time <= start.saturating_add(r)
            {
                j += 1;
            }
            if j == i {
                i += 1;
                continue;
            }
            let (lo, hi) = (metas[i].min_time, metas[j - 1].max_time);
            let complete = start.saturating_add(r) <= high || (lo == start && hi == start + r);
            if j - i > 1 && complete {
                return Some((i..j).collect());
            }
            i = j;
        }
    }
    None
}

/// Merges `blocks` (sorted by min time; of one stream) into one new block
/// under `parent`, as local compaction merges them: sources the union of
/// theirs, parents the blocks, level their maximum + 1, each timestamp
/// once (the first block's sample where they overlap). The object-storage
/// compactor's entry into the block writer; crash-hook steps
/// `compact-block:<step>`. Returns `None` when no sample remains.
///
/// # Errors
/// On I/O failure or a block that fails its checks while read (its data
/// must not be dropped silently).
pub fn merge_blocks(
    parent: &Path,
    blocks: &[Arc<Block>],
    crash: Option<CrashHook>,
) -> Result<Option<BlockMeta>> {
    write_block(
        parent,
        "compact",
        merged_plan(blocks),
        merged_series(blocks),
        crash,
    )
}

/// The blocks (indexes into `metas`, sorted by min time) to merge next
/// with ranges from `block_range_ms` growing by three up to
/// `max_block_ms`, as local compaction plans them ([`plan`]).
pub fn plan_merge(
    metas: &[&BlockMeta],
    block_range_ms: i64,
    max_block_ms: i64,
) -> Option<Vec<usize>> {
    plan(metas, &ranges(block_range_ms, max_block_ms))
}

/// Deletes a block directory crash-safely: renamed aside first, so a crash
/// mid-removal leaves a leftover that open removes, never a half block.
pub(crate) fn delete_block_dir(dir: &Path) -> Result<()> {
    let Some(name) = dir.file_name().and_then(|n| n.to_str()) else {
        return Ok(());
    };
    let parent = dir.parent().unwrap_or(Path::new("."));
    let aside: PathBuf = parent.join(format!("{name}{TMP_DELETION_SUFFIX}"));
    fs::rename(dir, &aside).map_err(io_err("rename block for deletion", dir))?;
    sync_dir(parent)?;
    fs::remove_dir_all(&aside).map_err(io_err("remove block", &aside))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(min: i64, max: i64) -> BlockMeta {
        BlockMeta::new(min, max)
    }

    #[test]
    fn merges_keep_the_highest_floor_their_parents_imply() {
        let persisted = |min, max, floor| {
            let mut m = meta(min, max);
            m.tidemark.head_floor = Some(floor);
            m
        };
        // A head block [0, 2) then a persisted one [2, 4) whose head had
        // floor 2: the merge [0, 4) still implies 2, not 4.
        let (a, b) = (meta(0, 2), persisted(2, 4, 2));
        assert_eq!(merged_head_floor(&[&a, &b], 4), Some(2));
        // A later head block [4, 6) raised the floor to its end: no record.
        let c = meta(4, 6);
        assert_eq!(merged_head_floor(&[&b, &c], 6), None);
        // Plain blocks imply their end.
        assert_eq!(merged_head_floor(&[&a, &c], 6), None);
        assert_eq!(b.implied_head_floor(), 2);
        assert_eq!(persisted(0, 4, i64::MIN).implied_head_floor(), i64::MIN);
        // A recorded floor never exceeds the block's own end.
        assert_eq!(persisted(0, 4, 9).implied_head_floor(), 4);
    }

    #[test]
    fn ranges_grow_by_three_up_to_the_max() {
        let h = 3_600_000;
        assert_eq!(ranges(2 * h, 36 * h), vec![2 * h, 6 * h, 18 * h]);
        assert_eq!(ranges(2 * h, h), vec![2 * h]);
    }

    #[test]
    fn plan_merges_three_complete_blocks_and_skips_the_newest() {
        let r = ranges(2, 18);
        let ms = [meta(0, 2), meta(2, 4), meta(4, 6), meta(6, 8)];
        let refs: Vec<&BlockMeta> = ms.iter().collect();
        assert_eq!(plan(&refs, &r), Some(vec![0, 1, 2]));
        // Only two blocks of the range and the newest is left out: nothing.
        let refs: Vec<&BlockMeta> = ms[..3].iter().collect();
        assert_eq!(plan(&refs, &r), None);
        // An incomplete range before newer data still merges.
        let ms = [meta(0, 2), meta(2, 4), meta(6, 8), meta(8, 10)];
        let refs: Vec<&BlockMeta> = ms.iter().collect();
        assert_eq!(plan(&refs, &r), Some(vec![0, 1]));
    }

    #[test]
    fn plan_merges_overlapping_blocks_first() {
        let r = ranges(2, 18);
        let ms = [meta(0, 2), meta(2, 4), meta(3, 5), meta(8, 10)];
        let refs: Vec<&BlockMeta> = ms.iter().collect();
        assert_eq!(plan(&refs, &r), Some(vec![1, 2]));
    }

    fn head_chunk(samples: &[Sample]) -> InputChunk {
        let mut app = chunk::XorAppender::new();
        for s in samples {
            app.append(s.t, s.v);
        }
        InputChunk::Head(HeadChunk {
            encoding: chunk::Encoding::Xor,
            mint: samples[0].t,
            maxt: samples[samples.len() - 1].t,
            bytes: std::sync::Arc::from(app.finish()),
        })
    }

    fn bits(samples: &[Sample]) -> Vec<(i64, u64)> {
        samples.iter().map(|s| (s.t, s.v.to_bits())).collect()
    }

    proptest::proptest! {
        /// Whatever the sources (overlapping or not), deletions and range,
        /// the written samples are exactly the oracle's: in range, not
        /// deleted, each timestamp once with the oldest source's value.
        #[test]
        fn prop_block_chunks_match_the_oracle(
            parts in proptest::collection::vec(
                (
                    proptest::collection::btree_set(0i64..400, 1..150),
                    proptest::option::of((0i64..400, 0i64..80)),
                ),
                1..4,
            ),
            mint in 0i64..200,
            len in 0i64..400,
        ) {
            let maxt = mint + len;
            let mut input = Vec::new();
            let mut oracle: std::collections::BTreeMap<i64, u64> = Default::default();
            for (p, (ts, del)) in parts.iter().enumerate() {
                let samples: Vec<Sample> =
                    ts.iter().map(|&t| Sample::new(t, (t * 10 + p as i64) as f64)).collect();
                let chunks = samples.chunks(50).map(head_chunk).collect();
                let deleted = del.map(|(a, l)| {
                    let mut ivs = Intervals::default();
                    ivs.add(crate::storage::tombstones::Interval { mint: a, maxt: a + l });
                    ivs
                });
                for s in &samples {
                    let gone = deleted.as_ref().is_some_and(|d| d.contains(s.t));
                    if s.t >= mint && s.t <= maxt && !gone {
                        oracle.entry(s.t).or_insert(s.v.to_bits());
                    }
                }
                input.push(InputPart { chunks, deleted });
            }
            let (out, hists) = series_samples(&input, mint, maxt).unwrap();
            proptest::prop_assert!(hists.is_empty());
            let want: Vec<(i64, u64)> = oracle.into_iter().collect();
            proptest::prop_assert_eq!(bits(&out), want);
        }
    }
}
