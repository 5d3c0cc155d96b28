//! [`Block`]: an open, memory-mapped block: matcher selection over the
//! index's postings, series and chunk access, label names/values, and the
//! block's tombstones (the one mutable part, rewritten atomically).
//!
//! Owns reading a block directory and its tombstones file; never writes
//! index or chunks, never applies tombstones to samples (the querier does).

use std::collections::BTreeSet;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use memmap2::Mmap;
use parking_lot::{Mutex, RwLock};

use crate::model::{LabelsBuilder, MatchOp, Matcher};
use crate::storage::postings::{difference, intersect, merge};
use crate::storage::tombstones::{read_tombstones, write_tombstones, Interval, Tombstones};
use crate::storage::BlockSeriesId;

use super::chunks::{map_file, open_segments, BlockChunk, Segment};
use super::corruption::Corruption;
use super::index::{IndexReader, NameEntry, SeriesEntry};
use super::meta::read_meta;
use super::{
    BlockError, BlockMeta, BlockSeries, CHUNKS_DIR, INDEX_FILE, META_FILE, TOMBSTONES_FILE,
};

/// An open block. Immutable except for its tombstones; `Send + Sync`, meant
/// to be shared as `Arc<Block>`.
///
/// Locking: `tombstones` is a `RwLock` read by queries and replaced by
/// [`Block::delete`]; `delete_lock` serializes deletions (held across the
/// file rewrite, taken before `tombstones`). Everything else is immutable.
pub struct Block {
    dir: PathBuf,
    meta: BlockMeta,
    index_path: PathBuf,
    index_map: Mmap,
    index: IndexReader,
    segments: Vec<Arc<Segment>>,
    tombstones: RwLock<Tombstones<BlockSeriesId>>,
    delete_lock: Mutex<()>,
    index_bytes: u64,
    chunk_bytes: u64,
    other_bytes: u64,
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
    /// (reads all chunk data, in file order).
    ///
    /// # Errors
    /// [`BlockError::Corrupt`] naming file and offset for any damage;
    /// [`BlockError::UnsupportedVersion`]; [`BlockError::Io`]. Never panics
    /// on any file contents.
    pub fn open(dir: &Path, verify_chunks: bool) -> Result<Block, BlockError> {
        let meta = read_meta(&dir.join(META_FILE))?;
        let index_path = dir.join(INDEX_FILE);
        let f = File::open(&index_path).map_err(|source| BlockError::Io {
            op: "open index",
            path: index_path.clone(),
            source,
        })?;
        let index_bytes = file_len(&index_path)?;
        if index_bytes == 0 {
            return Err(BlockError::Corrupt {
                path: index_path,
                offset: 0,
                reason: Corruption::TooShort { len: 0 },
            });
        }
        let index_map = map_file(&f, &index_path)?;
        drop(f);
        let index = IndexReader::parse(&index_map, &index_path)?;
        let segments = open_segments(&dir.join(CHUNKS_DIR))?;
        let chunk_bytes = segments.iter().map(|s| s.bytes().len() as u64).sum();
        index.check_all(&index_map, |m| {
            let seg = m
                .chunk_ref
                .segment()
                .checked_sub(1)
                .and_then(|i| segments.get(i as usize))
                .ok_or_else(|| BlockError::Corrupt {
                    path: index_path.clone(),
                    offset: 0,
                    reason: Corruption::MissingSegment {
                        segment: m.chunk_ref.segment(),
                    },
                })?;
            seg.check_bounds(m.chunk_ref.offset(), m.data_len)?;
            if verify_chunks {
                seg.chunk(m.chunk_ref.offset(), m.data_len)?;
            }
            Ok(())
        })?;
        let ts_path = dir.join(TOMBSTONES_FILE);
        let tombstones = read_tombstones(&ts_path)?;
        let other_bytes = file_len(&ts_path)? + file_len(&dir.join(META_FILE))?;
        Ok(Block {
            dir: dir.to_path_buf(),
            meta,
            index_path,
            index_map,
            index,
            segments,
            tombstones: RwLock::new(tombstones),
            delete_lock: Mutex::new(()),
            index_bytes,
            chunk_bytes,
            other_bytes,
        })
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

    fn data(&self) -> &[u8] {
        &self.index_map
    }

    /// Series ids matching all `matchers`, ascending (= label order).
    ///
    /// Prometheus semantics, as the head's `MemPostings::for_matchers`: a
    /// matcher that matches `""` also selects series without the label, so
    /// it subtracts the values it rejects instead of intersecting those it
    /// accepts; with no positive matcher the start set is every series.
    pub(crate) fn postings_for_matchers(
        &self,
        matchers: &[Matcher],
    ) -> Result<Vec<u64>, BlockError> {
        let mut result: Option<Vec<u64>> = None;
        for m in matchers.iter().filter(|m| !m.matches_empty()) {
            let list = self.values_matching(m, true)?;
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
            None => (0..self.index.num_series()).collect(),
        };
        for m in matchers.iter().filter(|m| m.matches_empty()) {
            let reject = self.values_matching(m, false)?;
            result = difference(&result, &reject);
        }
        Ok(result)
    }

    /// Union of the postings of `m.name()`'s values `v` with
    /// `m.matches(v) == want`.
    fn values_matching(&self, m: &Matcher, want: bool) -> Result<Vec<u64>, BlockError> {
        let data = self.data();
        let Some(name) = self.index.find_name(data, m.name())? else {
            return Ok(Vec::new());
        };
        let lookup = |values: &[&str]| -> Result<Vec<u64>, BlockError> {
            let mut lists = Vec::with_capacity(values.len());
            for v in values {
                if let Some(off) = self.index.find_value(data, &name, v)? {
                    lists.push(self.index.postings(data, off)?);
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
            let (sym, off) = self.index.value(data, &name, i)?;
            if m.matches(self.index.symbol(data, sym)?) == want {
                lists.push(self.index.postings(data, off)?);
            }
        }
        Ok(merge(&lists))
    }

    /// Builds the [`BlockSeries`] of a decoded entry, keeping the chunks for
    /// which `keep(mint, maxt)` holds.
    fn build_series(
        &self,
        id: BlockSeriesId,
        e: &SeriesEntry,
        keep: impl Fn(i64, i64) -> bool,
    ) -> Result<BlockSeries, BlockError> {
        let data = self.data();
        let mut b = LabelsBuilder::new();
        for &(n, v) in &e.labels {
            b.push(self.index.symbol(data, n)?, self.index.symbol(data, v)?);
        }
        let labels = b.build().map_err(|source| BlockError::Corrupt {
            path: self.index_path.clone(),
            offset: 0,
            reason: Corruption::InvalidLabels {
                series: id.0,
                source,
            },
        })?;
        let mut chunks = Vec::with_capacity(e.chunks.len());
        for m in e.chunks.iter().filter(|m| keep(m.mint, m.maxt)) {
            let segment = m
                .chunk_ref
                .segment()
                .checked_sub(1)
                .and_then(|i| self.segments.get(i as usize))
                .ok_or_else(|| BlockError::Corrupt {
                    path: self.index_path.clone(),
                    offset: 0,
                    reason: Corruption::MissingSegment {
                        segment: m.chunk_ref.segment(),
                    },
                })?;
            chunks.push(BlockChunk {
                mint: m.mint,
                maxt: m.maxt,
                chunk_ref: m.chunk_ref,
                data_len: m.data_len,
                segment: Arc::clone(segment),
            });
        }
        Ok(BlockSeries { id, labels, chunks })
    }

    /// Series matching all `matchers` with at least one chunk overlapping
    /// `[mint, maxt]` (inclusive), sorted by labels; only the overlapping
    /// chunks are returned. Tombstones are not applied (see
    /// [`Block::tombstones`]).
    ///
    /// # Errors
    /// [`BlockError::Corrupt`] if the mapped index turns out damaged.
    pub fn select(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<BlockSeries>, BlockError> {
        let mut out = Vec::new();
        let mut e = SeriesEntry::default();
        for id in self.postings_for_matchers(matchers)? {
            self.index.series_into(self.data(), id, &mut e)?;
            if !e.chunks.iter().any(|c| c.mint <= maxt && mint <= c.maxt) {
                continue;
            }
            out.push(self.build_series(BlockSeriesId(id), &e, |a, b| a <= maxt && mint <= b)?);
        }
        Ok(out)
    }

    /// All series in label order with all their chunks (for compaction),
    /// decoded one at a time.
    pub fn series(&self) -> impl Iterator<Item = Result<BlockSeries, BlockError>> + '_ {
        let mut e = SeriesEntry::default();
        (0..self.index.num_series()).map(move |id| {
            self.index.series_into(self.data(), id, &mut e)?;
            self.build_series(BlockSeriesId(id), &e, |_, _| true)
        })
    }

    /// Number of series in the block.
    pub fn num_series(&self) -> u64 {
        self.index.num_series()
    }

    /// Label names of the series matching `matchers` (all names when
    /// empty), sorted.
    ///
    /// # Errors
    /// [`BlockError::Corrupt`] if the mapped index turns out damaged.
    pub fn label_names(&self, matchers: &[Matcher]) -> Result<Vec<String>, BlockError> {
        let data = self.data();
        if matchers.is_empty() {
            return self
                .index
                .names()
                .iter()
                .map(|n| self.index.symbol(data, n.sym).map(str::to_string))
                .collect();
        }
        let mut syms = BTreeSet::new();
        let mut e = SeriesEntry::default();
        for id in self.postings_for_matchers(matchers)? {
            self.index.series_into(data, id, &mut e)?;
            syms.extend(e.labels.iter().map(|&(n, _)| n));
        }
        // Symbol refs sort like their strings.
        syms.into_iter()
            .map(|s| self.index.symbol(data, s).map(str::to_string))
            .collect()
    }

    /// Values of label `name` over the series matching `matchers` (all
    /// series when empty), sorted.
    ///
    /// # Errors
    /// [`BlockError::Corrupt`] if the mapped index turns out damaged.
    pub fn label_values(
        &self,
        name: &str,
        matchers: &[Matcher],
    ) -> Result<Vec<String>, BlockError> {
        let data = self.data();
        let Some(entry) = self.index.find_name(data, name)? else {
            return Ok(Vec::new());
        };
        if matchers.is_empty() {
            return self.all_values(&entry);
        }
        let mut syms = BTreeSet::new();
        let mut e = SeriesEntry::default();
        for id in self.postings_for_matchers(matchers)? {
            self.index.series_into(data, id, &mut e)?;
            if let Some(&(_, v)) = e.labels.iter().find(|&&(n, _)| n == entry.sym) {
                syms.insert(v);
            }
        }
        syms.into_iter()
            .map(|s| self.index.symbol(data, s).map(str::to_string))
            .collect()
    }

    fn all_values(&self, name: &NameEntry) -> Result<Vec<String>, BlockError> {
        let data = self.data();
        (0..IndexReader::value_count(name))
            .map(|i| {
                let (sym, _) = self.index.value(data, name, i)?;
                self.index.symbol(data, sym).map(str::to_string)
            })
            .collect()
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
        let _serial = self.delete_lock.lock();
        let mut next = self.tombstones.read().clone();
        let mut affected = 0;
        let mut e = SeriesEntry::default();
        for id in self.postings_for_matchers(matchers)? {
            self.index.series_into(self.data(), id, &mut e)?;
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
