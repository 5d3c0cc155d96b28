//! [`Block`]: an open block, memory-mapped from a directory or read from
//! object storage through [`RemoteBlockFiles`]: matcher selection over the
//! index's postings, series and chunk access, label names/values, and the
//! block's tombstones (the one mutable part, rewritten atomically);
//! [`BlockIndex`], a mapped and checked index file. A block may carry
//! stream labels ([`Block::with_stream_labels`], [`super::stream`]) that
//! its selections and label answers add to every series.
//!
//! Owns reading a block directory and its tombstones file; never writes
//! index or chunks, never applies tombstones to samples (the querier does).

use std::collections::BTreeSet;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use memmap2::Mmap;
use parking_lot::{Mutex, RwLock};

#[cfg(test)]
use crate::model::MatchOp;
use crate::model::{Labels, LabelsBuilder, Matcher};
#[cfg(test)]
use crate::storage::postings::{difference, intersect, merge};
use crate::storage::tombstones::{read_tombstones, write_tombstones, Interval, Tombstones};
use crate::storage::BlockSeriesId;

mod matching;

use super::chunks::{
    chunk_in_bounds, map_file, open_segments, BlockChunk, ChunkRef, ChunkSource, Segment,
};
use super::corruption::Corruption;
use super::index::{ChunkMeta, IndexReader, NameEntry, SeriesEntry};
use super::meta::read_meta;
use super::remote::{FetchBatch, RemoteBlockFiles, RemoteSegments, BATCH_MAX_BYTES};
use super::stream::Stream;
use super::{
    BlockError, BlockMeta, BlockSeries, CHUNKS_DIR, INDEX_FILE, META_FILE, TOMBSTONES_FILE,
};

/// An open block. Immutable except for its tombstones; `Send + Sync`, meant
/// to be shared as `Arc<Block>`. Its index and chunk segments are either
/// local memory-mapped files ([`Block::open`]) or objects in a bucket read
/// through [`RemoteBlockFiles`] ([`Block::open_remote`]).
///
/// Locking: `tombstones` is a `RwLock` read by queries and replaced by
/// [`Block::delete`]; `delete_lock` serializes deletions (held across the
/// file rewrite, taken before `tombstones`). Everything else is immutable.
pub struct Block {
    dir: PathBuf,
    meta: BlockMeta,
    index: IndexSource,
    segments: Segments,
    tombstones: RwLock<Tombstones<BlockSeriesId>>,
    delete_lock: Mutex<()>,
    stream: Stream,
    index_bytes: u64,
    chunk_bytes: u64,
    other_bytes: u64,
}

/// Where a block's index is.
enum IndexSource {
    Local(Box<BlockIndex>),
    /// Loaded (and perhaps fetched) when a read needs it, and held by that
    /// read only: the store's cache may evict it between reads.
    Remote(Arc<dyn RemoteBlockFiles>),
}

/// Where a block's chunk segments are.
enum Segments {
    Local(Vec<Arc<Segment>>),
    Remote(Arc<RemoteSegments>),
}

/// An index held for one read.
enum IndexRef<'a> {
    Local(&'a BlockIndex),
    Held(Arc<BlockIndex>),
}

impl std::ops::Deref for IndexRef<'_> {
    type Target = BlockIndex;

    fn deref(&self) -> &BlockIndex {
        match self {
            IndexRef::Local(i) => i,
            IndexRef::Held(i) => i,
        }
    }
}

/// A block's index file, memory-mapped, its sections and every entry
/// checked, every chunk reference checked to lie inside its segment.
pub struct BlockIndex {
    path: PathBuf,
    map: Mmap,
    reader: IndexReader,
}

impl std::fmt::Debug for BlockIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockIndex")
            .field("path", &self.path)
            .field("bytes", &self.map.len())
            .finish_non_exhaustive()
    }
}

impl BlockIndex {
    /// Maps the index file at `path` and checks it (as [`Block::open`]
    /// does) against chunk segments of `segment_sizes` bytes (segment `n`
    /// at `[n - 1]`): a chunk reference past its segment's end, or to a
    /// segment that does not exist, is damage.
    ///
    /// # Errors
    /// [`BlockError::Corrupt`] naming the offset, [`BlockError::Io`].
    /// Never panics on any file contents.
    pub fn open(path: &Path, segment_sizes: &[u64]) -> Result<Self, BlockError> {
        let index = Self::open_parsed(path)?;
        index.check(|index_path, m| {
            let size = segment_of(segment_sizes, m.chunk_ref, index_path)?;
            if !chunk_in_bounds(*size, m.chunk_ref.offset(), m.data_len) {
                return Err(BlockError::Corrupt {
                    path: index_path.to_path_buf(),
                    offset: 0,
                    reason: Corruption::ChunkOutOfSegment {
                        chunk: m.chunk_ref.to_string(),
                        segment_bytes: *size,
                    },
                });
            }
            Ok(())
        })?;
        Ok(index)
    }

    /// Maps the index file at `path` and parses its TOC, section
    /// checksums, symbols and label names; series entries and postings
    /// lists are left for [`BlockIndex::check`] (every read bounds-checks
    /// what it decodes either way).
    fn open_parsed(path: &Path) -> Result<Self, BlockError> {
        let f = File::open(path).map_err(|source| BlockError::Io {
            op: "open index",
            path: path.to_path_buf(),
            source,
        })?;
        let len = file_len(path)?;
        if len == 0 {
            return Err(BlockError::Corrupt {
                path: path.to_path_buf(),
                offset: 0,
                reason: Corruption::TooShort { len: 0 },
            });
        }
        let map = map_file(&f, path)?;
        drop(f);
        let reader = IndexReader::parse(&map, path)?;
        Ok(Self {
            path: path.to_path_buf(),
            map,
            reader,
        })
    }

    /// Walks every series entry and postings list, calling `on_chunk` for
    /// each chunk meta in file order.
    fn check(
        &self,
        mut on_chunk: impl FnMut(&Path, &ChunkMeta) -> Result<(), BlockError>,
    ) -> Result<(), BlockError> {
        self.reader
            .check_all(&self.map, |m| on_chunk(&self.path, m))
            .map(|_| ())
    }

    /// Bytes of the index file.
    pub fn len(&self) -> u64 {
        self.map.len() as u64
    }

    /// The index file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the file is empty (never: such an index does not open).
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

/// The entry of `r`'s segment in `list` (segment `n` at `[n - 1]`); a
/// segment the list lacks is damage of the index at `index_path`.
fn segment_of<'a, T>(list: &'a [T], r: ChunkRef, index_path: &Path) -> Result<&'a T, BlockError> {
    r.segment()
        .checked_sub(1)
        .and_then(|i| list.get(i as usize))
        .ok_or_else(|| BlockError::Corrupt {
            path: index_path.to_path_buf(),
            offset: 0,
            reason: Corruption::MissingSegment {
                segment: r.segment(),
            },
        })
}

impl std::fmt::Debug for Block {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Block")
            .field("dir", &self.dir)
            .field("meta", &self.meta)
            .finish_non_exhaustive()
    }
}

fn file_len(path: &Path) -> Result<u64, BlockError> {
    std::fs::metadata(path)
        .map(|m| m.len())
        .map_err(|source| BlockError::Io {
            op: "stat",
            path: path.to_path_buf(),
            source,
        })
}

impl Block {
    /// Opens a block directory: parses `meta.json`, maps the index and the
    /// chunk segments, verifies every index section checksum, every series
    /// entry and postings list, and that every chunk reference lies inside
    /// its segment. With `verify_chunks`, also checks every chunk's CRC
    /// (reads all chunk data, in file order). [`Block::open_deferring_checks`]
    /// then [`Block::check`].
    ///
    /// # Errors
    /// [`BlockError::Corrupt`] naming file and offset for any damage;
    /// [`BlockError::UnsupportedVersion`]; [`BlockError::Io`]. Never panics
    /// on any file contents.
    pub fn open(dir: &Path, verify_chunks: bool) -> Result<Block, BlockError> {
        let block = Self::open_deferring_checks(dir)?;
        block.check(verify_chunks)?;
        Ok(block)
    }

    /// Opens a block directory with the checks that cost little whatever
    /// its size: `meta.json`, the tombstones, the chunk segments' headers,
    /// the index's TOC and section checksums, its symbols and label names.
    /// The walk over every series entry, postings list and chunk is left to
    /// [`Block::check`]; until it has passed, a read that meets damage
    /// fails with the error the reader finds (every read bounds-checks what
    /// it decodes), and the block must not be merged or shipped.
    ///
    /// # Errors
    /// As [`Block::open`], for the parts it reads. Never panics on any file
    /// contents.
    pub fn open_deferring_checks(dir: &Path) -> Result<Block, BlockError> {
        let meta = read_meta(&dir.join(META_FILE))?;
        let segments = open_segments(&dir.join(CHUNKS_DIR))?;
        let chunk_bytes = segments.iter().map(|s| s.bytes().len() as u64).sum();
        let index = BlockIndex::open_parsed(&dir.join(INDEX_FILE))?;
        let index_bytes = index.len();
        let (tombstones, other_bytes) = read_small_files(dir)?;
        Ok(Block {
            dir: dir.to_path_buf(),
            meta,
            index: IndexSource::Local(Box::new(index)),
            segments: Segments::Local(segments),
            tombstones: RwLock::new(tombstones),
            delete_lock: Mutex::new(()),
            stream: Stream::default(),
            index_bytes,
            chunk_bytes,
            other_bytes,
        })
    }

    /// The checks [`Block::open`] makes beyond
    /// [`Block::open_deferring_checks`]: every series entry (labels in
    /// order, entries tiling the section) and postings list, every chunk
    /// reference inside its segment and, with `verify_chunks`, every
    /// chunk's CRC. A block in object storage passes: its index is
    /// checked whole each time it is loaded ([`BlockIndex::open`]).
    ///
    /// # Errors
    /// As [`Block::open`]. Never panics on any file contents.
    pub fn check(&self, verify_chunks: bool) -> Result<(), BlockError> {
        let (IndexSource::Local(index), Segments::Local(segments)) = (&self.index, &self.segments)
        else {
            return Ok(());
        };
        index.check(|index_path, m| {
            let seg = segment_of(segments, m.chunk_ref, index_path)?;
            seg.check_bounds(m.chunk_ref.offset(), m.data_len)?;
            if verify_chunks {
                seg.chunk(m.chunk_ref.offset(), m.data_len)?;
            }
            Ok(())
        })
    }

    /// Opens a block whose index and chunk segments are in object storage:
    /// `dir` holds its `meta.json` and `tombstones` (read here), `files`
    /// reads the rest when a query needs it. `index_bytes` and
    /// `segment_sizes` (segment `n` at `[n - 1]`) are the objects' sizes;
    /// `name` names the block in errors (its key in the bucket). Nothing is
    /// fetched here.
    ///
    /// # Errors
    /// As [`Block::open`] for `meta.json` and `tombstones`.
    pub fn open_remote(
        dir: &Path,
        files: Arc<dyn RemoteBlockFiles>,
        index_bytes: u64,
        segment_sizes: Vec<u64>,
        name: PathBuf,
    ) -> Result<Block, BlockError> {
        let meta = read_meta(&dir.join(META_FILE))?;
        let (tombstones, other_bytes) = read_small_files(dir)?;
        let chunk_bytes = segment_sizes.iter().sum();
        Ok(Block {
            dir: dir.to_path_buf(),
            meta,
            index: IndexSource::Remote(files.clone()),
            segments: Segments::Remote(Arc::new(RemoteSegments {
                files,
                sizes: segment_sizes,
                name,
            })),
            tombstones: RwLock::new(tombstones),
            delete_lock: Mutex::new(()),
            stream: Stream::default(),
            index_bytes,
            chunk_bytes,
            other_bytes,
        })
    }

    /// The block with stream labels (a bucket block's `thanos.labels`):
    /// [`Block::select`], [`Block::label_names`] and [`Block::label_values`]
    /// answer as if every series carried them, a stream label replacing a
    /// series label of the same name (as Thanos's store gateway gives the
    /// external label precedence); a matcher naming one is decided against
    /// the block's value before the index is read. [`Block::series`]
    /// (compaction) and the tombstones stay in the index's terms.
    #[must_use]
    pub fn with_stream_labels(mut self, labels: Labels) -> Block {
        self.stream = Stream::new(labels);
        self
    }

    /// The block's stream labels (empty unless set by
    /// [`Block::with_stream_labels`]).
    pub fn stream_labels(&self) -> &Labels {
        self.stream.labels()
    }

    /// Whether the block's files are in object storage
    /// ([`Block::open_remote`]).
    pub fn is_remote(&self) -> bool {
        matches!(self.index, IndexSource::Remote(_))
    }

    /// The index, held for one read (fetched first if it must be).
    fn index(&self) -> Result<IndexRef<'_>, BlockError> {
        match &self.index {
            IndexSource::Local(i) => Ok(IndexRef::Local(i)),
            IndexSource::Remote(files) => files.index().map(IndexRef::Held),
        }
    }

    /// The block's `meta.json` as read at open.
    pub fn meta(&self) -> &BlockMeta {
        &self.meta
    }

    /// The block directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Bytes of all the block's files (tombstones as of open).
    pub fn size_bytes(&self) -> u64 {
        self.index_bytes + self.chunk_bytes + self.other_bytes
    }

    /// Bytes of the index file.
    pub fn index_bytes(&self) -> u64 {
        self.index_bytes
    }

    /// Bytes of all chunk segment files.
    pub fn chunk_bytes(&self) -> u64 {
        self.chunk_bytes
    }
}

/// The tombstones of the block in `dir` and the bytes of its small files
/// (tombstones, `meta.json`).
fn read_small_files(dir: &Path) -> Result<(Tombstones<BlockSeriesId>, u64), BlockError> {
    let ts_path = dir.join(TOMBSTONES_FILE);
    let tombstones = read_tombstones(&ts_path)?;
    let other_bytes = file_len(&ts_path)? + file_len(&dir.join(META_FILE))?;
    Ok((tombstones, other_bytes))
}

/// The fetch batch being filled by a selection of a remote block, with the
/// frame bytes it holds so far.
type OpenBatch = Option<(Arc<FetchBatch>, u64)>;

/// What one selection carries from series to series while it builds them.
#[derive(Default)]
struct Selecting {
    batch: OpenBatch,
    strings: SymbolStrings,
}

impl Block {
    /// Series ids matching all `matchers`, ascending (= label order).
    ///
    /// Prometheus semantics, as the head's `MemPostings::for_matchers`: a
    /// matcher that matches `""` also selects series without the label, so
    /// it subtracts the values it rejects instead of intersecting those it
    /// accepts; with no positive matcher the start set is every series.
    fn postings_for_matchers(
        ix: &BlockIndex,
        matchers: &[Matcher],
    ) -> Result<Vec<u64>, BlockError> {
        matching::postings_for_matchers(ix, matchers)
    }

    /// The ids [`Block::select`] considers for `matchers` (index matchers
    /// only, no stream labels), through the planner with the given
    /// label-check cost.
    #[cfg(test)]
    pub(crate) fn postings_for_matchers_planned(
        &self,
        matchers: &[Matcher],
        check_cost: usize,
    ) -> Result<Vec<u64>, BlockError> {
        matching::postings_for_matchers_with(&*self.index()?, matchers, check_cost)
    }

    /// [`Block::postings_for_matchers`] from postings alone, without the
    /// planner: the reference the planner is tested against.
    #[cfg(test)]
    pub(crate) fn postings_for_matchers_plain(
        &self,
        matchers: &[Matcher],
    ) -> Result<Vec<u64>, BlockError> {
        let ix = self.index()?;
        let ix = &*ix;
        let mut result: Option<Vec<u64>> = None;
        for m in matchers.iter().filter(|m| !m.matches_empty()) {
            let list = Self::values_matching(ix, m, true)?;
            result = Some(match result {
                None => list,
                Some(r) => intersect(&r, &list),
            });
            if result.as_ref().is_some_and(Vec::is_empty) {
                return Ok(Vec::new());
            }
        }
        let mut result = match result {
            Some(r) => r,
            None => (0..ix.reader.num_series()).collect(),
        };
        for m in matchers.iter().filter(|m| m.matches_empty()) {
            let reject = Self::values_matching(ix, m, false)?;
            result = difference(&result, &reject);
        }
        Ok(result)
    }

    /// Union of the postings of `m.name()`'s values `v` with
    /// `m.matches(v) == want`.
    #[cfg(test)]
    fn values_matching(ix: &BlockIndex, m: &Matcher, want: bool) -> Result<Vec<u64>, BlockError> {
        let (data, index) = (&ix.map[..], &ix.reader);
        let Some(name) = index.find_name(data, m.name())? else {
            return Ok(Vec::new());
        };
        let lookup = |values: &[&str]| -> Result<Vec<u64>, BlockError> {
            let mut lists = Vec::with_capacity(values.len());
            for v in values {
                if let Some(off) = index.find_value(data, &name, v)? {
                    lists.push(index.postings(data, off)?);
                }
            }
            Ok(merge(&lists))
        };
        if want {
            if let Some(set) = m.set_matches() {
                return lookup(&set);
            }
        } else if m.op() == MatchOp::NotEqual {
            // `l!="v"` rejects exactly the value v.
            return lookup(&[m.value()]);
        }
        let mut lists = Vec::new();
        for i in 0..IndexReader::value_count(&name) {
            let (sym, off) = index.value(data, &name, i)?;
            if m.matches(index.symbol(data, sym)?) == want {
                lists.push(index.postings(data, off)?);
            }
        }
        Ok(merge(&lists))
    }

    /// The labels of a decoded entry, with the stream labels when
    /// `with_stream`.
    fn build_labels(
        &self,
        ix: &BlockIndex,
        id: BlockSeriesId,
        e: &SeriesEntry,
        with_stream: bool,
        strings: &mut SymbolStrings,
    ) -> Result<Labels, BlockError> {
        let mut b = LabelsBuilder::new();
        for &(n, v) in &e.labels {
            let name = strings.get(ix, n)?;
            if !with_stream || self.stream.keeps(&name) {
                b.push_shared(name, strings.get(ix, v)?);
            }
        }
        if with_stream {
            for l in self.stream.iter() {
                b.push_shared(l.name.clone(), l.value.clone());
            }
        }
        b.build().map_err(|source| BlockError::Corrupt {
            path: ix.path.clone(),
            offset: 0,
            reason: Corruption::InvalidLabels {
                series: id.0,
                source,
            },
        })
    }

    /// Builds the [`BlockSeries`] of a decoded entry, keeping the chunks for
    /// which `keep(mint, maxt)` holds, its labels with the stream labels
    /// when `with_stream`. A remote block's chunks join `state.batch`
    /// (a new one once it holds [`BATCH_MAX_BYTES`]).
    fn build_series(
        &self,
        ix: &BlockIndex,
        id: BlockSeriesId,
        e: &SeriesEntry,
        keep: impl Fn(i64, i64) -> bool,
        with_stream: bool,
        state: &mut Selecting,
    ) -> Result<BlockSeries, BlockError> {
        let labels = self.build_labels(ix, id, e, with_stream, &mut state.strings)?;
        let mut chunks = Vec::with_capacity(e.chunks.len());
        for m in e.chunks.iter().filter(|m| keep(m.mint, m.maxt)) {
            let source = match &self.segments {
                Segments::Local(segments) => {
                    let segment = segment_of(segments, m.chunk_ref, &ix.path)?;
                    ChunkSource::Mapped(Arc::clone(segment))
                }
                Segments::Remote(remote) => {
                    let (current, bytes) = match state.batch.take() {
                        Some((b, n)) if n < BATCH_MAX_BYTES => (b, n),
                        _ => (Arc::new(FetchBatch::new(remote.clone())), 0),
                    };
                    let added = current.add(m.chunk_ref, m.data_len);
                    let source = ChunkSource::Fetched(current.clone());
                    state.batch = Some((current, bytes.saturating_add(added)));
                    source
                }
            };
            chunks.push(BlockChunk {
                mint: m.mint,
                maxt: m.maxt,
                chunk_ref: m.chunk_ref,
                data_len: m.data_len,
                source,
            });
        }
        Ok(BlockSeries { id, labels, chunks })
    }

    /// Series matching all `matchers` with at least one chunk overlapping
    /// `[mint, maxt]` (inclusive), sorted by labels; only the overlapping
    /// chunks are returned. Tombstones are not applied (see
    /// [`Block::tombstones`]). A remote block's chunks are read when first
    /// used, in batches ([`super::remote`]). Series carry the block's stream
    /// labels ([`Block::with_stream_labels`]).
    ///
    /// # Errors
    /// [`BlockError::Corrupt`] if the mapped index turns out damaged;
    /// [`BlockError::Fetch`] when a remote block's index cannot be read.
    pub fn select(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<BlockSeries>, BlockError> {
        let mut state = Selecting::default();
        let mut out = self.select_each(matchers, mint, maxt, |ix, id, e| {
            self.build_series(ix, id, e, |a, b| a <= maxt && mint <= b, true, &mut state)
        })?;
        if !self.stream.is_empty() {
            // Added labels can change the order (and a replaced label
            // too).
            out.sort_by(|a, b| a.labels.cmp(&b.labels));
        }
        Ok(out)
    }

    /// The labels of [`Block::select`]'s series, without their chunks
    /// (what the series API needs): the same series, in the same order.
    ///
    /// # Errors
    /// As [`Block::select`].
    pub fn select_labels(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<Labels>, BlockError> {
        let mut strings = SymbolStrings::default();
        let mut out = self.select_each(matchers, mint, maxt, |ix, id, e| {
            self.build_labels(ix, id, e, true, &mut strings)
        })?;
        if !self.stream.is_empty() {
            out.sort();
        }
        Ok(out)
    }

    /// `build` of every series matching `matchers` (the stream's labels
    /// decided here) with a chunk overlapping `[mint, maxt]`, in id order.
    fn select_each<T>(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
        mut build: impl FnMut(&BlockIndex, BlockSeriesId, &SeriesEntry) -> Result<T, BlockError>,
    ) -> Result<Vec<T>, BlockError> {
        let Some(matchers) = self.stream.split(matchers) else {
            return Ok(Vec::new());
        };
        let ix = self.index()?;
        let mut out = Vec::new();
        let mut e = SeriesEntry::default();
        for id in Self::postings_for_matchers(&ix, &matchers)? {
            ix.reader.series_into(&ix.map, id, &mut e)?;
            if e.chunks.iter().any(|c| c.mint <= maxt && mint <= c.maxt) {
                out.push(build(&ix, BlockSeriesId(id), &e)?);
            }
        }
        Ok(out)
    }

    /// All series in label order with all their chunks (for compaction),
    /// decoded one at a time, with the index's labels only (no stream
    /// labels: a compacted block's stream is in its `meta.json`).
    pub fn series(&self) -> impl Iterator<Item = Result<BlockSeries, BlockError>> + '_ {
        let (ix, failed) = match self.index() {
            Ok(ix) => (Some(ix), None),
            Err(e) => (None, Some(e)),
        };
        failed
            .into_iter()
            .map(Err)
            .chain(ix.into_iter().flat_map(move |ix| {
                let mut e = SeriesEntry::default();
                let mut state = Selecting::default();
                (0..ix.reader.num_series()).map(move |id| {
                    ix.reader.series_into(&ix.map, id, &mut e)?;
                    self.build_series(&ix, BlockSeriesId(id), &e, |_, _| true, false, &mut state)
                })
            }))
    }

    /// Number of series in the block (from `meta.json` for a remote block
    /// whose index cannot be read).
    pub fn num_series(&self) -> u64 {
        self.index()
            .map_or(self.meta.stats.num_series, |ix| ix.reader.num_series())
    }

    /// Label names of the series matching `matchers` (all names when
    /// empty), sorted; the stream labels among them when a series matches.
    ///
    /// # Errors
    /// [`BlockError::Corrupt`] if the mapped index turns out damaged.
    pub fn label_names(&self, matchers: &[Matcher]) -> Result<Vec<String>, BlockError> {
        let Some(matchers) = self.stream.split(matchers) else {
            return Ok(Vec::new());
        };
        let ix = self.index()?;
        let mut names = Self::index_label_names(&ix, &matchers)?;
        if !self.stream.is_empty() && Self::any_series(&ix, &matchers)? {
            names.extend(self.stream.iter().map(|l| l.name.to_string()));
            names.sort_unstable();
            names.dedup();
        }
        Ok(names)
    }

    /// Whether any series matches `matchers` (index matchers only).
    fn any_series(ix: &BlockIndex, matchers: &[Matcher]) -> Result<bool, BlockError> {
        if matchers.is_empty() {
            return Ok(ix.reader.num_series() > 0);
        }
        Ok(!Self::postings_for_matchers(ix, matchers)?.is_empty())
    }

    /// [`Block::label_names`] from the index alone.
    fn index_label_names(ix: &BlockIndex, matchers: &[Matcher]) -> Result<Vec<String>, BlockError> {
        let (data, index) = (&ix.map[..], &ix.reader);
        if matchers.is_empty() {
            return index
                .names()
                .iter()
                .map(|n| index.symbol(data, n.sym).map(str::to_string))
                .collect();
        }
        let mut syms = BTreeSet::new();
        let mut labels = Vec::new();
        for id in Self::postings_for_matchers(ix, matchers)? {
            index.series_labels_into(data, id, &mut labels)?;
            syms.extend(labels.iter().map(|&(n, _)| n));
        }
        // Symbol refs sort like their strings.
        syms.into_iter()
            .map(|s| index.symbol(data, s).map(str::to_string))
            .collect()
    }

    /// Values of label `name` over the series matching `matchers` (all
    /// series when empty), sorted; a stream label's is the block's value
    /// when a series matches.
    ///
    /// # Errors
    /// [`BlockError::Corrupt`] if the mapped index turns out damaged.
    pub fn label_values(
        &self,
        name: &str,
        matchers: &[Matcher],
    ) -> Result<Vec<String>, BlockError> {
        let Some(matchers) = self.stream.split(matchers) else {
            return Ok(Vec::new());
        };
        let matchers = &matchers[..];
        let ix = self.index()?;
        if let Some(v) = self.stream.get(name) {
            return Ok(if Self::any_series(&ix, matchers)? {
                vec![v.to_string()]
            } else {
                Vec::new()
            });
        }
        let (data, index) = (&ix.map[..], &ix.reader);
        let Some(entry) = index.find_name(data, name)? else {
            return Ok(Vec::new());
        };
        if matchers.is_empty() {
            return Self::all_values(&ix, &entry);
        }
        let mut syms = BTreeSet::new();
        let mut labels = Vec::new();
        for id in Self::postings_for_matchers(&ix, matchers)? {
            index.series_labels_into(data, id, &mut labels)?;
            if let Some(&(_, v)) = labels.iter().find(|&&(n, _)| n == entry.sym) {
                syms.insert(v);
            }
        }
        syms.into_iter()
            .map(|s| index.symbol(data, s).map(str::to_string))
            .collect()
    }

    fn all_values(ix: &BlockIndex, name: &NameEntry) -> Result<Vec<String>, BlockError> {
        let (data, index) = (&ix.map[..], &ix.reader);
        (0..IndexReader::value_count(name))
            .map(|i| {
                let (sym, _) = index.value(data, name, i)?;
                index.symbol(data, sym).map(str::to_string)
            })
            .collect()
    }

    /// Whether any series of the block has deleted intervals.
    pub fn has_tombstones(&self) -> bool {
        !self.tombstones.read().is_empty()
    }

    /// The current tombstones (series id -> deleted intervals), a snapshot.
    pub fn tombstones(&self) -> Tombstones<BlockSeriesId> {
        self.tombstones.read().clone()
    }

    /// Marks `[mint, maxt]` (inclusive) deleted for every series matching
    /// `matchers` that has a chunk overlapping it; the stored interval is
    /// clipped to the block's range. Rewrites the tombstones file
    /// atomically (tmp + fsync + rename + dir fsync) before the change is
    /// visible. `meta.json`'s `numTombstones` is not rewritten.
    ///
    /// Returns the number of series affected.
    ///
    /// # Errors
    /// [`BlockError::Io`] when the file cannot be rewritten (tombstones then
    /// stay as they were), [`BlockError::Corrupt`] from the index.
    pub fn delete(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Result<usize, BlockError> {
        if mint > maxt || !self.meta.overlaps(mint, maxt) {
            return Ok(0);
        }
        let iv = Interval::new(
            mint.max(self.meta.min_time),
            maxt.min(self.meta.max_time.saturating_sub(1)),
        );
        let Some(matchers) = self.stream.split(matchers) else {
            return Ok(0);
        };
        let _serial = self.delete_lock.lock();
        let mut next = self.tombstones.read().clone();
        let mut affected = 0;
        let mut e = SeriesEntry::default();
        let ix = self.index()?;
        for id in Self::postings_for_matchers(&ix, &matchers)? {
            ix.reader.series_into(&ix.map, id, &mut e)?;
            if e.chunks.iter().any(|c| c.mint <= maxt && mint <= c.maxt) {
                next.add(BlockSeriesId(id), iv);
                affected += 1;
            }
        }
        if affected > 0 {
            write_tombstones(&self.dir.join(TOMBSTONES_FILE), &next)?;
            *self.tombstones.write() = next;
        }
        Ok(affected)
    }
}

/// The strings of the symbols one selection has turned into labels so far:
/// names and most values repeat from series to series within a call, so
/// each is allocated once per call and shared by the label sets, instead
/// of once per series (and freed as many times). Dropped with the call,
/// and emptied whenever it reaches [`SymbolStrings::MAX`] strings: a
/// compaction streams every series of a block through one, and must not
/// keep every distinct value of a high-cardinality block alive.
struct SymbolStrings {
    held: std::collections::HashMap<u32, Arc<str>, ahash::RandomState>,
    max: usize,
}

impl Default for SymbolStrings {
    fn default() -> Self {
        Self::with_max(Self::MAX)
    }
}

impl SymbolStrings {
    /// Most strings held at once (a few MiB at most).
    const MAX: usize = 1 << 16;

    fn with_max(max: usize) -> Self {
        Self {
            held: Default::default(),
            max,
        }
    }

    /// Symbol `sym` of `ix`'s index as a shared string.
    fn get(&mut self, ix: &BlockIndex, sym: u32) -> Result<Arc<str>, BlockError> {
        if let Some(s) = self.held.get(&sym) {
            return Ok(Arc::clone(s));
        }
        let s: Arc<str> = Arc::from(ix.reader.symbol(&ix.map[..], sym)?);
        if self.held.len() >= self.max {
            self.held.clear();
        }
        self.held.insert(sym, Arc::clone(&s));
        Ok(s)
    }
}

#[cfg(test)]
mod symbol_strings_tests {
    use super::*;
    use crate::storage::block::writer::BlockWriter;

    /// Every symbol reads back as the index has it, from the cache or not,
    /// and the cache never holds more than its bound.
    #[test]
    fn shared_strings_are_the_index_symbols_and_stay_bounded() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("block");
        let mut w = BlockWriter::create(&dir).unwrap();
        let chunk = {
            let mut a = crate::storage::chunk::XorAppender::new();
            a.append(1, 1.0);
            a.finish()
        };
        for i in 0..100 {
            let labels =
                Labels::try_from_pairs([("__name__", "m".to_string()), ("id", format!("{i:03}"))])
                    .unwrap();
            w.add_series(&labels, &[(1, 1, &chunk[..])]).unwrap();
        }
        w.finish(BlockMeta::new(1, 2)).unwrap();
        let block = Block::open(&dir, true).unwrap();
        let ix = block.index().unwrap();
        let symbols = ix.reader.symbols_len();
        assert!(symbols > 100);
        let mut strings = SymbolStrings::with_max(8);
        for round in 0..2 {
            for sym in 0..symbols as u32 {
                let want = ix.reader.symbol(&ix.map[..], sym).unwrap();
                assert_eq!(&*strings.get(&ix, sym).unwrap(), want, "round {round}");
                assert!(strings.held.len() <= 8);
            }
        }
    }
}
