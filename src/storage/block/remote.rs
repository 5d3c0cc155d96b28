//! Blocks whose index and chunk segments stay in object storage (the store
//! role): [`RemoteBlockFiles`], what such a block reads its files through,
//! and [`FetchBatch`], the chunks of one selection read together on first
//! use, in one request per segment (the implementation coalesces nearby
//! ranges), with the chunks whose timestamps they share.
//!
//! Owns which byte ranges a selection needs and checking that what comes
//! back is the length asked for; the frames are parsed and CRC-checked by
//! [`super::chunks`] as for a mapped segment. Must not know about buckets,
//! caches or runtimes: those are the implementation's ([`crate::store`]).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Range;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use parking_lot::Mutex;

use super::chunks::{
    frame_encoding_byte, frame_len, framed_len, parse_frame, ChunkRef, SEGMENT_HEADER_LEN,
};
use super::reader::BlockIndex;
use super::BlockError;
use crate::storage::chunk::{shared_timestamps_owner, Encoding};

/// Bytes read at a chunk's offset when only its offset is known (the owner
/// of shared timestamps): its frame says how long it is, and a longer one
/// is read again whole. An owner holds its timestamps (a few bits a
/// sample on a scrape grid) and its values: most are under 1 KiB.
const OWNER_PROBE_BYTES: u64 = 1024;

/// Frame bytes one [`FetchBatch`] holds at most (a chunk larger than that
/// alone gets a batch of its own): bounds the memory a selection pins.
pub(crate) const BATCH_MAX_BYTES: u64 = 16 << 20;

/// Where a block in object storage reads its files. Implemented by the
/// store role over a bucket and its caches; called from query threads
/// (blocking calls are expected).
pub trait RemoteBlockFiles: Send + Sync {
    /// The block's index, fetched if it is not held, mapped and checked
    /// ([`BlockIndex::open`]).
    ///
    /// # Errors
    /// [`BlockError::Fetch`] when it cannot be fetched, and whatever
    /// [`BlockIndex::open`] finds wrong with it.
    fn index(&self) -> Result<Arc<BlockIndex>, BlockError>;

    /// The bytes of `ranges` (sorted, not overlapping) of chunk segment
    /// `segment` (numbered from 1), one [`Bytes`] per range, exactly as
    /// long as the range.
    ///
    /// # Errors
    /// [`BlockError::Fetch`] when a read fails.
    fn read_chunk_ranges(
        &self,
        segment: u32,
        ranges: &[Range<u64>],
    ) -> Result<Vec<Bytes>, BlockError>;
}

/// The chunk segments of a block in object storage.
pub(crate) struct RemoteSegments {
    pub(crate) files: Arc<dyn RemoteBlockFiles>,
    /// Size of segment `n` at `[n - 1]`.
    pub(crate) sizes: Vec<u64>,
    /// The block's name in errors (its key in the bucket).
    pub(crate) name: PathBuf,
}

impl RemoteSegments {
    fn path(&self, segment: u32) -> PathBuf {
        self.name
            .join(super::CHUNKS_DIR)
            .join(super::chunks::segment_name(segment))
    }

    fn size(&self, segment: u32) -> Option<u64> {
        let i = segment.checked_sub(1)?;
        self.sizes.get(i as usize).copied()
    }

    /// Reads `ranges` of `segment`, checking each answer's length.
    fn read(&self, segment: u32, ranges: &[Range<u64>]) -> Result<Vec<Bytes>, BlockError> {
        if ranges.is_empty() {
            return Ok(Vec::new());
        }
        let got = self.files.read_chunk_ranges(segment, ranges)?;
        let short = got.len() != ranges.len()
            || got
                .iter()
                .zip(ranges)
                .any(|(b, r)| b.len() as u64 != r.end - r.start);
        if short {
            return Err(BlockError::Fetch {
                path: self.path(segment),
                message: "the bucket answered ranges of other lengths than asked".to_string(),
            });
        }
        Ok(got)
    }
}

/// Chunks of one selection from a block in object storage, read together
/// the first time any of them is read (so selecting series for their
/// labels alone reads no chunk). Holds the framed chunks (and the owners
/// of the timestamps they share) until the last [`super::BlockChunk`] of
/// the batch is dropped.
///
/// Locking: `wanted` is filled while the selection is built and taken
/// once by the load; `loaded` is set once (concurrent readers wait for the
/// first). A failed load stays failed for this batch: the query reports
/// it; the next query reads again.
pub(crate) struct FetchBatch {
    segments: Arc<RemoteSegments>,
    wanted: Mutex<Vec<(ChunkRef, u64)>>,
    loaded: OnceLock<Result<HashMap<ChunkRef, Bytes>, String>>,
}

impl FetchBatch {
    pub(crate) fn new(segments: Arc<RemoteSegments>) -> Self {
        Self {
            segments,
            wanted: Mutex::new(Vec::new()),
            loaded: OnceLock::new(),
        }
    }

    /// Adds the chunk at `r` of `data_len` bytes; returns its frame bytes.
    pub(crate) fn add(&self, r: ChunkRef, data_len: u64) -> u64 {
        let len = frame_len(data_len);
        self.wanted.lock().push((r, len));
        len
    }

    pub(crate) fn segment_path(&self, segment: u32) -> PathBuf {
        self.segments.path(segment)
    }

    fn frames(&self) -> Result<&HashMap<ChunkRef, Bytes>, BlockError> {
        let loaded = self.loaded.get_or_init(|| {
            let wanted = std::mem::take(&mut *self.wanted.lock());
            self.fetch(wanted).map_err(|e| e.to_string())
        });
        loaded.as_ref().map_err(|message| BlockError::Fetch {
            path: self.segments.name.clone(),
            message: message.clone(),
        })
    }

    /// The framed chunk at `r`, parsed and CRC-checked (`data_len` as for
    /// [`super::chunks::parse_frame`]).
    pub(crate) fn chunk(
        &self,
        r: ChunkRef,
        data_len: Option<u64>,
    ) -> Result<(u8, &[u8]), BlockError> {
        let corrupt = |reason| BlockError::Corrupt {
            path: self.segments.path(r.segment()),
            offset: u64::from(r.offset()),
            reason,
        };
        let frame = self.frames()?.get(&r).ok_or_else(|| {
            corrupt(super::Corruption::OutOfBounds {
                part: super::Part::Chunk,
            })
        })?;
        parse_frame(frame, data_len).map_err(corrupt)
    }

    /// The unchecked encoding byte of the chunk at `r` (reads the batch).
    pub(crate) fn encoding_byte(&self, r: ChunkRef) -> Option<u8> {
        frame_encoding_byte(self.frames().ok()?.get(&r)?)
    }

    fn fetch(&self, wanted: Vec<(ChunkRef, u64)>) -> Result<HashMap<ChunkRef, Bytes>, BlockError> {
        let mut by_segment: BTreeMap<u32, BTreeMap<u32, u64>> = BTreeMap::new();
        for (r, len) in wanted {
            by_segment
                .entry(r.segment())
                .or_default()
                .insert(r.offset(), len);
        }
        let mut out = HashMap::new();
        for (segment, chunks) in &by_segment {
            let ranges = disjoint_ranges(chunks.iter().map(|(&o, &l)| (u64::from(o), l)));
            let got = self.read_spans(*segment, &ranges)?;
            for (r, b) in ranges.iter().zip(got) {
                // Frames that overlap (never, in a valid index) are sliced
                // out of one read.
                for (&o, &l) in chunks.range(r.start as u32..) {
                    let rel = u64::from(o) - r.start;
                    if rel + l > b.len() as u64 {
                        break;
                    }
                    out.insert(
                        ChunkRef::new(*segment, o),
                        b.slice(rel as usize..(rel + l) as usize),
                    );
                }
            }
        }
        self.fetch_owners(&mut out)?;
        Ok(out)
    }

    fn read_spans(&self, segment: u32, ranges: &[Range<u64>]) -> Result<Vec<Bytes>, BlockError> {
        self.segments.read(segment, ranges)
    }

    /// Adds the chunks whose timestamps the fetched packed chunks share,
    /// when not fetched already: a probe of [`OWNER_PROBE_BYTES`] at each
    /// offset, and a second read for a frame longer than that.
    fn fetch_owners(&self, out: &mut HashMap<ChunkRef, Bytes>) -> Result<(), BlockError> {
        let packed = Encoding::Packed.to_byte();
        let mut owners: BTreeMap<u32, BTreeSet<u32>> = BTreeMap::new();
        for (r, frame) in out.iter() {
            if frame_encoding_byte(frame) != Some(packed) {
                continue;
            }
            let Ok((_, data)) = parse_frame(frame, None) else {
                continue;
            };
            let Some(at) = shared_timestamps_owner(data).and_then(|a| u32::try_from(a).ok()) else {
                continue;
            };
            let key = ChunkRef::new(r.segment(), at);
            if !out.contains_key(&key) {
                owners.entry(r.segment()).or_default().insert(at);
            }
        }
        for (segment, offsets) in owners {
            let Some(size) = self.segments.size(segment) else {
                continue;
            };
            // An owner outside the segment is left missing: decoding the
            // chunk that names it reports the damage.
            let probes: Vec<Range<u64>> = offsets
                .iter()
                .map(|&o| u64::from(o))
                .filter(|&o| o >= SEGMENT_HEADER_LEN as u64 && o < size)
                .map(|o| o..(o + OWNER_PROBE_BYTES).min(size))
                .collect();
            let probes = disjoint_probes(probes);
            let got = self.read_spans(segment, &probes)?;
            let mut longer = Vec::new();
            for (p, b) in probes.iter().zip(got) {
                match framed_len(&b) {
                    Some(len) if len <= b.len() as u64 => {
                        out.insert(
                            ChunkRef::new(segment, p.start as u32),
                            b.slice(..len as usize),
                        );
                    }
                    Some(len) if p.start.saturating_add(len) <= size => {
                        longer.push(p.start..p.start + len);
                    }
                    _ => {}
                }
            }
            // A hostile segment's frames may overlap: those are left out.
            let mut end = 0;
            longer.retain(|r| {
                let keep = r.start >= end;
                if keep {
                    end = r.end;
                }
                keep
            });
            let got = self.read_spans(segment, &longer)?;
            for (r, b) in longer.iter().zip(got) {
                out.insert(ChunkRef::new(segment, r.start as u32), b);
            }
        }
        Ok(())
    }
}

/// Ranges covering `(offset, len)` frames sorted by offset, overlapping
/// ones merged (a valid index has none; a hostile one must not make a
/// read ask for overlapping ranges).
fn disjoint_ranges(frames: impl Iterator<Item = (u64, u64)>) -> Vec<Range<u64>> {
    let mut out: Vec<Range<u64>> = Vec::new();
    for (o, l) in frames {
        let end = o.saturating_add(l);
        match out.last_mut() {
            Some(last) if o < last.end => last.end = last.end.max(end),
            _ => out.push(o..end),
        }
    }
    out
}

/// Probe ranges sorted by start with overlaps cut (each probe keeps its
/// start: owners are looked up by it).
fn disjoint_probes(mut probes: Vec<Range<u64>>) -> Vec<Range<u64>> {
    probes.sort_by_key(|r| r.start);
    let starts: Vec<u64> = probes.iter().map(|r| r.start).collect();
    for (i, p) in probes.iter_mut().enumerate() {
        if let Some(&next) = starts.get(i + 1) {
            p.end = p.end.min(next);
        }
    }
    probes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Matcher;
    use crate::storage::block::{Block, BlockSeries, INDEX_FILE};
    use std::path::Path;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A block directory read as if it were in a bucket, counting reads;
    /// `sizes` may lie (hostile listings), `short` answers one byte short.
    struct DirFiles {
        dir: PathBuf,
        sizes: Vec<u64>,
        ranges_read: AtomicUsize,
        short: bool,
    }

    impl RemoteBlockFiles for DirFiles {
        fn index(&self) -> Result<Arc<BlockIndex>, BlockError> {
            BlockIndex::open(&self.dir.join(INDEX_FILE), &self.sizes).map(Arc::new)
        }

        fn read_chunk_ranges(
            &self,
            segment: u32,
            ranges: &[Range<u64>],
        ) -> Result<Vec<Bytes>, BlockError> {
            let path = self
                .dir
                .join(crate::storage::block::CHUNKS_DIR)
                .join(super::super::chunks::segment_name(segment));
            let bytes = std::fs::read(path).unwrap();
            self.ranges_read.fetch_add(ranges.len(), Ordering::Relaxed);
            Ok(ranges
                .iter()
                .map(|r| {
                    let end = if self.short { r.end - 1 } else { r.end };
                    Bytes::copy_from_slice(&bytes[r.start as usize..end as usize])
                })
                .collect())
        }
    }

    fn fixture() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/testdata/block-packed-v1")
    }

    fn segment_sizes(dir: &Path) -> Vec<u64> {
        let mut v: Vec<(String, u64)> =
            std::fs::read_dir(dir.join(crate::storage::block::CHUNKS_DIR))
                .unwrap()
                .map(|e| {
                    let e = e.unwrap();
                    (
                        e.file_name().into_string().unwrap(),
                        e.metadata().unwrap().len(),
                    )
                })
                .collect();
        v.sort();
        v.into_iter().map(|(_, s)| s).collect()
    }

    fn remote(dir: &Path, sizes: Vec<u64>, short: bool) -> (Block, Arc<DirFiles>) {
        let files = Arc::new(DirFiles {
            dir: dir.to_path_buf(),
            sizes: sizes.clone(),
            ranges_read: AtomicUsize::new(0),
            short,
        });
        let index_bytes = std::fs::metadata(dir.join(INDEX_FILE)).unwrap().len();
        let b =
            Block::open_remote(dir, files.clone(), index_bytes, sizes, "bucket/b".into()).unwrap();
        (b, files)
    }

    /// Series as labels and each chunk's samples (value bits).
    type Bits = Vec<(String, Vec<Vec<(i64, u64)>>)>;

    fn bits(series: &[BlockSeries]) -> Bits {
        series
            .iter()
            .map(|s| {
                let chunks = s
                    .chunks
                    .iter()
                    .map(|c| {
                        c.samples()
                            .unwrap()
                            .iter()
                            .map(|x| (x.t, x.v.to_bits()))
                            .collect()
                    })
                    .collect();
                (s.labels.to_string(), chunks)
            })
            .collect()
    }

    #[test]
    fn remote_block_reads_every_sample_as_the_mapped_one() {
        let dir = fixture();
        let local = Block::open(&dir, true).unwrap();
        let (remote, files) = remote(&dir, segment_sizes(&dir), false);
        let all = [Matcher::neq("__name__", "")];
        assert_eq!(
            bits(&remote.select(&all, i64::MIN, i64::MAX).unwrap()),
            bits(&local.select(&all, i64::MIN, i64::MAX).unwrap())
        );
        assert_eq!(
            remote.label_names(&[]).unwrap(),
            local.label_names(&[]).unwrap()
        );
        // Each series alone: a chunk sharing another's timestamps fetches
        // that chunk too.
        for s in local.series() {
            let s = s.unwrap();
            let ms: Vec<Matcher> = s
                .labels
                .iter()
                .map(|l| Matcher::eq(&*l.name, &*l.value))
                .collect();
            assert_eq!(
                bits(&remote.select(&ms, i64::MIN, i64::MAX).unwrap()),
                bits(&local.select(&ms, i64::MIN, i64::MAX).unwrap())
            );
        }
        // Series selected for their labels alone read no chunk.
        let before = files.ranges_read.load(Ordering::Relaxed);
        let selected = remote.select(&all, i64::MIN, i64::MAX).unwrap();
        assert!(!selected.is_empty());
        assert_eq!(files.ranges_read.load(Ordering::Relaxed), before);
    }

    #[test]
    fn hostile_listings_and_short_answers_are_errors_not_panics() {
        let dir = fixture();
        let sizes = segment_sizes(&dir);
        // Segments shorter than the index says: the index does not load.
        let short_sizes: Vec<u64> = sizes.iter().map(|s| s / 2).collect();
        let (b, _) = remote(&dir, short_sizes, false);
        let all = [Matcher::neq("__name__", "")];
        assert!(matches!(
            b.select(&all, i64::MIN, i64::MAX),
            Err(BlockError::Corrupt { .. })
        ));
        // A missing segment.
        let (b, _) = remote(&dir, Vec::new(), false);
        assert!(b.select(&all, i64::MIN, i64::MAX).is_err());
        // A bucket answering other lengths than asked: a fetch error.
        let (b, _) = remote(&dir, sizes.clone(), true);
        let s = b.select(&all, i64::MIN, i64::MAX).unwrap();
        assert!(matches!(
            s[0].chunks[0].data(),
            Err(BlockError::Fetch { .. })
        ));
        assert_eq!(s[0].chunks[0].encoding(), None);
        // A truncated index.
        let tmp = tempfile::tempdir().unwrap();
        for f in ["meta.json", "tombstones", INDEX_FILE] {
            std::fs::copy(dir.join(f), tmp.path().join(f)).unwrap();
        }
        let ix = tmp.path().join(INDEX_FILE);
        let len = std::fs::metadata(&ix).unwrap().len();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&ix)
            .unwrap()
            .set_len(len / 2)
            .unwrap();
        let files = Arc::new(DirFiles {
            dir: tmp.path().to_path_buf(),
            sizes: sizes.clone(),
            ranges_read: AtomicUsize::new(0),
            short: false,
        });
        let b = Block::open_remote(tmp.path(), files, len, sizes, "bucket/b".into()).unwrap();
        assert!(matches!(
            b.select(&all, i64::MIN, i64::MAX),
            Err(BlockError::Corrupt { .. })
        ));
        assert!(b.label_names(&[]).is_err());
    }

    #[test]
    fn disjoint_ranges_merge_overlaps_only() {
        let got = disjoint_ranges([(8, 4), (12, 4), (14, 4), (30, 2)].into_iter());
        assert_eq!(got, vec![8..12, 12..18, 30..32]);
    }

    #[test]
    fn disjoint_probes_end_where_the_next_starts() {
        let got = disjoint_probes(vec![20..40, 8..30, 50..60]);
        assert_eq!(got, vec![8..20, 20..40, 50..60]);
    }
}
