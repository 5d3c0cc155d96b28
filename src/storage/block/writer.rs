//! [`BlockWriter`]: streams series into a new block directory.
//!
//! Chunk bytes go straight to segment files; each series entry goes to a
//! scratch file with provisional symbol numbers (symbols are only known
//! once every series is in), and `finish` rewrites them into the index
//! with the final, sorted symbol numbers. Memory held is the symbol table,
//! one postings id per series label and one offset per series: O(series +
//! symbols), never O(samples) or O(chunks).
//!
//! Owns writing one block directory; never renames it into place (the
//! caller does, after `finish`).

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use crate::model::{HistogramValue, Labels, Sample};
use crate::storage::chunk::{self, Encoding};
use crate::storage::encoding::{put_uvarint, read_uvarint, Decbuf};
use crate::storage::tombstones::{sync_dir, write_tombstones, Tombstones};
use crate::storage::FILE_BUFFER_SIZE;

use super::chunks::{ChunkRef, SegmentWriter, SEGMENT_MAX_SIZE};
use super::index::{put_chunk_metas, read_chunk_metas, ChunkMeta, MetaLayout};
use super::index_writer::{self, IndexWriteError, IndexWriter};
use super::meta::write_meta;
use super::{BlockError, BlockMeta, IndexSection, Part, CHUNKS_DIR, INDEX_FILE, TOMBSTONES_FILE};

/// Name of the scratch file of series entries (removed by `finish`).
const SERIES_SCRATCH: &str = "index.series.tmp";

/// Writes one block. Series must be added in strictly increasing label
/// order; call [`BlockWriter::finish`] to complete the block. Dropping the
/// writer without `finish` leaves an incomplete directory for the caller to
/// remove.
pub struct BlockWriter {
    dir: PathBuf,
    segments: SegmentWriter,
    scratch: BufWriter<File>,
    scratch_path: PathBuf,
    /// Provisional symbol number by string, and the strings by number.
    symbols: HashMap<Box<str>, u32, ahash::RandomState>,
    symbol_strings: Vec<Box<str>>,
    /// (name, value) provisional symbol numbers -> series ids, ascending.
    postings: HashMap<(u32, u32), Vec<u32>, ahash::RandomState>,
    last: Option<Labels>,
    entry: Vec<u8>,
    metas: Vec<ChunkMeta>,
    num_series: u64,
    num_chunks: u64,
    num_samples: u64,
    time_range: Option<(i64, i64)>,
    /// Timestamp sections ([`chunk::timestamp_section`]) of packed chunks
    /// written, and where: later series with the same timestamps share them.
    ts_owners: HashMap<Vec<u8>, ChunkRef, ahash::RandomState>,
    /// Bytes of keys in `ts_owners`.
    ts_owners_bytes: usize,
}

/// Most bytes of timestamp sections a writer remembers for sharing: a
/// 1,024-sample run's section is ~400 bytes with scrape jitter (a few with
/// aligned timestamps), so this covers ~80k distinct runs (scrape targets
/// times runs per series) and bounds the writer's memory beyond that.
const TIMESTAMP_OWNERS_BUDGET: usize = 32 << 20;

impl BlockWriter {
    /// Creates `dir` (must not exist; its parent must) and starts writing a
    /// block into it.
    ///
    /// # Errors
    /// [`BlockError::DirExists`], or [`BlockError::Io`] when a directory or
    /// file cannot be created.
    pub fn create(dir: &Path) -> Result<Self, BlockError> {
        Self::create_with_segment_size(dir, SEGMENT_MAX_SIZE)
    }

    /// [`BlockWriter::create`] with another segment size limit (tests cut
    /// segments at a few KiB).
    ///
    /// # Errors
    /// As [`BlockWriter::create`].
    pub fn create_with_segment_size(dir: &Path, segment_size: u64) -> Result<Self, BlockError> {
        if dir.exists() {
            return Err(BlockError::DirExists {
                path: dir.to_path_buf(),
            });
        }
        let io = |op: &'static str, p: &Path| {
            let p = p.to_path_buf();
            move |source| BlockError::Io {
                op,
                path: p,
                source,
            }
        };
        fs::create_dir(dir).map_err(io("create block directory", dir))?;
        let chunks_dir = dir.join(CHUNKS_DIR);
        fs::create_dir(&chunks_dir).map_err(io("create chunks directory", &chunks_dir))?;
        let scratch_path = dir.join(SERIES_SCRATCH);
        let scratch = File::create_new(&scratch_path).map_err(io("create", &scratch_path))?;
        Ok(Self {
            dir: dir.to_path_buf(),
            segments: SegmentWriter::new(chunks_dir, segment_size),
            scratch: BufWriter::with_capacity(FILE_BUFFER_SIZE, scratch),
            scratch_path,
            symbols: HashMap::default(),
            symbol_strings: Vec::new(),
            postings: HashMap::default(),
            last: None,
            entry: Vec::new(),
            metas: Vec::new(),
            num_series: 0,
            num_chunks: 0,
            num_samples: 0,
            time_range: None,
            ts_owners: HashMap::default(),
            ts_owners_bytes: 0,
        })
    }

    fn symbol(&mut self, s: &str) -> u32 {
        if let Some(&n) = self.symbols.get(s) {
            return n;
        }
        let n = self.symbol_strings.len() as u32;
        self.symbols.insert(s.into(), n);
        self.symbol_strings.push(s.into());
        n
    }

    /// Adds one series. Series must arrive in strictly increasing label
    /// order; chunks are XOR chunk bytes in time order, non-overlapping,
    /// given as `(mint, maxt, bytes)` with inclusive `mint`/`maxt`. A series
    /// with no chunks is skipped. Chunk bytes are streamed to the segment
    /// files, never buffered whole.
    ///
    /// # Errors
    /// [`BlockError::OutOfOrderSeries`], [`BlockError::ChunksOutOfOrder`],
    /// [`BlockError::InvalidChunk`] (fewer than the 2 header bytes), I/O.
    /// After an error the block is unusable: remove the directory.
    pub fn add_series(
        &mut self,
        labels: &Labels,
        chunks: &[(i64, i64, &[u8])],
    ) -> Result<(), BlockError> {
        let chunks: Vec<(i64, i64, Encoding, &[u8])> = chunks
            .iter()
            .map(|&(mint, maxt, bytes)| (mint, maxt, Encoding::Xor, bytes))
            .collect();
        self.add_encoded_series(labels, &chunks)
    }

    /// [`Self::add_series`] for chunks of any [`Encoding`], each given as
    /// `(mint, maxt, encoding, bytes)`.
    ///
    /// # Errors
    /// As [`Self::add_series`].
    pub fn add_encoded_series(
        &mut self,
        labels: &Labels,
        chunks: &[(i64, i64, Encoding, &[u8])],
    ) -> Result<(), BlockError> {
        if chunks.is_empty() {
            return Ok(());
        }
        self.check_series_order(labels)?;
        let mut prev_maxt: Option<i64> = None;
        let mut samples = 0u64;
        for (index, &(mint, maxt, _, bytes)) in chunks.iter().enumerate() {
            if mint > maxt || prev_maxt.is_some_and(|p| mint <= p) {
                return Err(BlockError::ChunksOutOfOrder {
                    labels: labels.clone(),
                    index,
                    mint,
                    maxt,
                    prev_maxt,
                });
            }
            prev_maxt = Some(maxt);
            samples += u64::from(chunk::num_samples(bytes).map_err(|source| {
                BlockError::InvalidChunk {
                    labels: labels.clone(),
                    index,
                    source,
                }
            })?);
        }
        let id = self.next_series_id()?;
        self.metas.clear();
        for &(mint, maxt, encoding, bytes) in chunks {
            let chunk_ref = self.segments.write(encoding, bytes)?;
            self.metas.push(ChunkMeta {
                mint,
                maxt,
                data_len: bytes.len() as u64,
                chunk_ref,
            });
        }
        self.finish_series(labels, id, samples)
    }

    /// Adds one series from its samples (strictly increasing timestamps),
    /// encoded the way blocks store data: runs of
    /// [`chunk::MAX_PACKED_SAMPLES`] as [`chunk::encode_run_for_block`]
    /// chooses, except that a run whose timestamps equal those of a packed
    /// chunk already written to the same segment (the other series of one
    /// scrape target) takes them from that chunk instead of storing them
    /// again (`docs/format/chunks-packed.md`).
    ///
    /// # Errors
    /// [`BlockError::OutOfOrderSeries`], [`BlockError::ChunksOutOfOrder`]
    /// for timestamps that do not increase, I/O.
    pub fn add_sample_series(
        &mut self,
        labels: &Labels,
        samples: &[Sample],
    ) -> Result<(), BlockError> {
        if samples.is_empty() {
            return Ok(());
        }
        self.check_series_order(labels)?;
        if let Some(i) = samples.windows(2).position(|w| w[1].t <= w[0].t) {
            return Err(BlockError::ChunksOutOfOrder {
                labels: labels.clone(),
                index: i + 1,
                mint: samples[i + 1].t,
                maxt: samples[i + 1].t,
                prev_maxt: Some(samples[i].t),
            });
        }
        let id = self.next_series_id()?;
        self.metas.clear();
        self.write_float_runs(samples)?;
        self.finish_series(labels, id, samples.len() as u64)
    }

    /// Writes `samples` as chunks of [`chunk::MAX_PACKED_SAMPLES`] (see
    /// [`Self::add_sample_series`]), adding their metas to `self.metas`.
    fn write_float_runs(&mut self, samples: &[Sample]) -> Result<(), BlockError> {
        for run in samples.chunks(chunk::MAX_PACKED_SAMPLES) {
            let key = chunk::timestamp_section(run);
            let shared = self.ts_owners.get(&key).and_then(|owner| {
                let bytes = chunk::encode_packed_shared(run, u64::from(owner.offset()));
                (self.segments.segment_for(bytes.len()) == owner.segment()).then_some(bytes)
            });
            let (encoding, bytes, owns) = match shared {
                Some(bytes) => match chunk::xor_if_smaller(run, bytes.len()) {
                    Some(xor) => (Encoding::Xor, xor, false),
                    None => (Encoding::Packed, bytes, false),
                },
                None => {
                    let (encoding, bytes) = chunk::encode_run_for_block(run);
                    (encoding, bytes, encoding == Encoding::Packed)
                }
            };
            let chunk_ref = self.segments.write(encoding, &bytes)?;
            if owns {
                self.remember_timestamps(key, chunk_ref);
            }
            self.metas.push(ChunkMeta {
                mint: run[0].t,
                maxt: run[run.len() - 1].t,
                data_len: bytes.len() as u64,
                chunk_ref,
            });
        }
        Ok(())
    }

    /// Adds one series from its float samples and its native histogram
    /// samples (each strictly increasing, no timestamp in both): float runs
    /// as [`Self::add_sample_series`] writes them, histogram runs as
    /// Prometheus histogram chunks ([`chunk::encode_histogram_run`]), in
    /// time order.
    ///
    /// # Errors
    /// As [`Self::add_sample_series`]; [`BlockError::ChunksOutOfOrder`]
    /// also when a float and a histogram share a timestamp.
    pub fn add_mixed_series(
        &mut self,
        labels: &Labels,
        samples: &[Sample],
        histograms: &[(i64, HistogramValue)],
    ) -> Result<(), BlockError> {
        if histograms.is_empty() {
            return self.add_sample_series(labels, samples);
        }
        self.check_series_order(labels)?;
        let times = samples.iter().map(|s| s.t).collect::<Vec<_>>();
        let htimes = histograms.iter().map(|(t, _)| *t).collect::<Vec<_>>();
        for ts in [&times, &htimes] {
            if let Some(i) = ts.windows(2).position(|w| w[1] <= w[0]) {
                return Err(BlockError::ChunksOutOfOrder {
                    labels: labels.clone(),
                    index: i + 1,
                    mint: ts[i + 1],
                    maxt: ts[i + 1],
                    prev_maxt: Some(ts[i]),
                });
            }
        }
        let id = self.next_series_id()?;
        self.metas.clear();
        // Alternate runs of each kind, in time order.
        let (mut i, mut j) = (0, 0);
        while i < samples.len() || j < histograms.len() {
            let float_next = match (samples.get(i), histograms.get(j)) {
                (Some(s), Some((ht, _))) if s.t == *ht => {
                    return Err(BlockError::ChunksOutOfOrder {
                        labels: labels.clone(),
                        index: i,
                        mint: s.t,
                        maxt: s.t,
                        prev_maxt: Some(*ht),
                    })
                }
                (Some(s), Some((ht, _))) => s.t < *ht,
                (Some(_), None) => true,
                _ => false,
            };
            if float_next {
                let end = histograms.get(j).map_or(samples.len(), |(ht, _)| {
                    i + samples[i..].partition_point(|s| s.t < *ht)
                });
                self.write_float_runs(&samples[i..end])?;
                i = end;
            } else {
                let end = samples.get(i).map_or(histograms.len(), |s| {
                    j + histograms[j..].partition_point(|(t, _)| *t < s.t)
                });
                for (encoding, mint, maxt, bytes) in
                    chunk::encode_histogram_run(&histograms[j..end])
                {
                    let chunk_ref = self.segments.write(encoding, &bytes)?;
                    self.metas.push(ChunkMeta {
                        mint,
                        maxt,
                        data_len: bytes.len() as u64,
                        chunk_ref,
                    });
                }
                j = end;
            }
        }
        self.finish_series(labels, id, (samples.len() + histograms.len()) as u64)
    }

    /// Records `chunk_ref` as the chunk holding the timestamps `key`
    /// encodes, within [`TIMESTAMP_OWNERS_BUDGET`] bytes of keys.
    fn remember_timestamps(&mut self, key: Vec<u8>, chunk_ref: ChunkRef) {
        if let Some(owner) = self.ts_owners.get_mut(&key) {
            *owner = chunk_ref;
        } else if self.ts_owners_bytes + key.len() <= TIMESTAMP_OWNERS_BUDGET {
            self.ts_owners_bytes += key.len();
            self.ts_owners.insert(key, chunk_ref);
        }
    }

    fn check_series_order(&self, labels: &Labels) -> Result<(), BlockError> {
        match &self.last {
            Some(prev) if prev >= labels => Err(BlockError::OutOfOrderSeries {
                prev: prev.clone(),
                got: labels.clone(),
            }),
            _ => Ok(()),
        }
    }

    fn next_series_id(&self) -> Result<u32, BlockError> {
        u32::try_from(self.num_series).map_err(|_| BlockError::TooLarge {
            what: "series count",
            size: self.num_series,
            max: u64::from(u32::MAX),
        })
    }

    /// Writes the index entry of a series whose chunks (`self.metas`) are
    /// written, and counts it.
    fn finish_series(&mut self, labels: &Labels, id: u32, samples: u64) -> Result<(), BlockError> {
        let mut entry = std::mem::take(&mut self.entry);
        entry.clear();
        put_uvarint(&mut entry, labels.len() as u64);
        for l in labels {
            let (n, v) = (self.symbol(&l.name), self.symbol(&l.value));
            put_uvarint(&mut entry, u64::from(n));
            put_uvarint(&mut entry, u64::from(v));
            self.postings.entry((n, v)).or_default().push(id);
        }
        // The scratch file keeps absolute times and references; the index
        // entry, written once the block's time base is known, is relative.
        put_chunk_metas(&mut entry, &self.metas, MetaLayout::Absolute);
        let mut frame = Vec::with_capacity(10);
        put_uvarint(&mut frame, entry.len() as u64);
        let io = |source| BlockError::Io {
            op: "write",
            path: self.scratch_path.clone(),
            source,
        };
        self.scratch.write_all(&frame).map_err(io)?;
        self.scratch.write_all(&entry).map_err(io)?;
        self.entry = entry;

        let first = self.metas.first().map_or(0, |m| m.mint);
        let last = self.metas.last().map_or(0, |m| m.maxt);
        self.time_range = Some(match self.time_range {
            None => (first, last),
            Some((a, b)) => (a.min(first), b.max(last)),
        });
        self.num_series += 1;
        self.num_chunks += self.metas.len() as u64;
        self.num_samples += samples;
        self.last = Some(labels.clone());
        Ok(())
    }

    /// The smallest mint and largest maxt (inclusive) over the chunks added
    /// so far; `None` before the first series. A caller building a block
    /// from data can derive `BlockMeta::min_time`/`max_time` from it.
    pub fn time_range(&self) -> Option<(i64, i64)> {
        self.time_range
    }

    /// Writes the index, an empty tombstones file and `meta.json` (stats
    /// filled in from what was added; ulid, times and compaction taken from
    /// `meta`), fsyncs every file and the directories. The caller renames
    /// the directory into place.
    ///
    /// # Errors
    /// [`BlockError::Io`] naming the file; [`BlockError::TooLarge`] past a
    /// format limit (2^32 symbols). The directory is then incomplete.
    pub fn finish(self, mut meta: BlockMeta) -> Result<BlockMeta, BlockError> {
        let BlockWriter {
            dir,
            segments,
            scratch,
            scratch_path,
            symbols,
            symbol_strings,
            postings,
            num_series,
            num_chunks,
            num_samples,
            time_range,
            ..
        } = self;
        let time_base = time_range.map_or(0, |(mint, _)| mint);
        drop(symbols);
        segments.finish()?;
        scratch
            .into_inner()
            .map_err(|e| e.into_error())
            .and_then(|mut f| f.flush())
            .map_err(io_error("flush", &scratch_path))?;

        let (order, remap) = final_symbol_numbers(&symbol_strings);
        let index_path = dir.join(INDEX_FILE);
        let file = File::create_new(&index_path).map_err(io_error("create index", &index_path))?;
        let to_block = |e: IndexWriteError| match e {
            IndexWriteError::Io(source) => io_error("write index", &index_path)(source),
            IndexWriteError::TooLarge { what, size, max } => {
                BlockError::TooLarge { what, size, max }
            }
        };
        let index = IndexWriter::new(BufWriter::with_capacity(FILE_BUFFER_SIZE, file))
            .map_err(IndexWriteError::from)
            .map_err(to_block)?;
        let index = index
            .write_symbols(order.iter().map(|&prov| &*symbol_strings[prov as usize]))
            .map_err(to_block)?;
        drop(order);
        let index = write_series_section(index, &scratch_path, num_series, &remap, time_base)
            .map_err(|e| e.into_block(&scratch_path, &index_path))?;
        fs::remove_file(&scratch_path).map_err(io_error("remove", &scratch_path))?;
        let index = write_postings_section(index, postings, &remap)
            .map_err(IndexWriteError::from)
            .map_err(to_block)?;
        let (w, _) = index.finish().map_err(to_block)?;
        let f = w
            .into_inner()
            .map_err(|e| io_error("flush index", &index_path)(e.into_error()))?;
        f.sync_all().map_err(io_error("fsync index", &index_path))?;
        drop(f);

        write_tombstones(&dir.join(TOMBSTONES_FILE), &Tombstones::new())?;
        meta.stats.num_series = num_series;
        meta.stats.num_chunks = num_chunks;
        meta.stats.num_samples = num_samples;
        meta.stats.num_tombstones = 0;
        write_meta(&dir, &meta)?;
        sync_dir(&dir).map_err(io_error("fsync block directory", &dir))?;
        Ok(meta)
    }
}

/// A [`BlockError::Io`] maker for `op` on `path`.
fn io_error(op: &'static str, path: &Path) -> impl Fn(std::io::Error) -> BlockError {
    let path = path.to_path_buf();
    move |source| BlockError::Io {
        op,
        path: path.clone(),
        source,
    }
}

/// Final symbol numbers are the strings' sorted order: returns the
/// provisional numbers in final order, and final number by provisional.
fn final_symbol_numbers(strings: &[Box<str>]) -> (Vec<u32>, Vec<u32>) {
    // Provisional numbers were handed out as u32 by `BlockWriter::symbol`.
    let mut order: Vec<u32> = (0..strings.len() as u32).collect();
    order.sort_unstable_by(|&a, &b| strings[a as usize].cmp(&strings[b as usize]));
    let mut remap = vec![0u32; strings.len()];
    for (fin, &prov) in order.iter().enumerate() {
        remap[prov as usize] = fin as u32;
    }
    (order, remap)
}

/// Where copying the scratch series entries into the index failed.
enum SeriesSectionError {
    /// Reading or decoding the scratch file.
    Scratch(&'static str, std::io::Error),
    /// Writing the index.
    Index(std::io::Error),
}

impl SeriesSectionError {
    fn into_block(self, scratch: &Path, index: &Path) -> BlockError {
        match self {
            SeriesSectionError::Scratch(op, e) => io_error(op, scratch)(e),
            SeriesSectionError::Index(e) => io_error("write index", index)(e),
        }
    }
}

/// The series section: the scratch entries re-encoded with final symbol
/// numbers, in the order they were added (label order).
fn write_series_section<W: Write>(
    mut index: IndexWriter<W, index_writer::Series>,
    scratch_path: &Path,
    num_series: u64,
    remap: &[u32],
    time_base: i64,
) -> Result<IndexWriter<W, index_writer::Postings>, SeriesSectionError> {
    let scratch = |op| move |e| SeriesSectionError::Scratch(op, e);
    let f = File::open(scratch_path).map_err(scratch("open"))?;
    let mut r = BufReader::with_capacity(FILE_BUFFER_SIZE, f);
    let mut entry = Vec::new();
    let mut out = Vec::new();
    let mut metas = Vec::new();
    for _ in 0..num_series {
        let len = read_uvarint(&mut r).map_err(scratch("read"))?;
        let len = usize::try_from(len).map_err(|_| {
            scratch("decode")(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "scratch entry length",
            ))
        })?;
        entry.resize(len, 0);
        r.read_exact(&mut entry).map_err(scratch("read"))?;
        out.clear();
        let first_ref = final_entry(&entry, remap, time_base, &mut metas, &mut out)
            .map_err(scratch("decode"))?;
        index
            .add_series(&out, first_ref)
            .map_err(SeriesSectionError::Index)?;
    }
    index
        .finish_series(time_base)
        .map_err(SeriesSectionError::Index)
}

/// The postings section, lists sorted by (name, value): final symbol
/// numbers sort like the strings.
fn write_postings_section<W: Write>(
    mut index: IndexWriter<W, index_writer::Postings>,
    postings: HashMap<(u32, u32), Vec<u32>, ahash::RandomState>,
    remap: &[u32],
) -> std::io::Result<IndexWriter<W, index_writer::Postings>> {
    let mut lists: Vec<((u32, u32), Vec<u32>)> = postings
        .into_iter()
        .map(|((n, v), ids)| ((remap[n as usize], remap[v as usize]), ids))
        .collect();
    lists.sort_unstable_by_key(|(k, _)| *k);
    for ((name, value), ids) in &lists {
        index.add_postings(*name, *value, ids)?;
    }
    Ok(index)
}

/// Re-encodes a scratch series entry into `out`: label symbols remapped,
/// chunk metas relative to `time_base`, without the first chunk's
/// reference, which it returns (the series directory holds it).
fn final_entry(
    entry: &[u8],
    remap: &[u32],
    time_base: i64,
    metas: &mut Vec<ChunkMeta>,
    out: &mut Vec<u8>,
) -> std::io::Result<u64> {
    let bad = |_| std::io::Error::new(std::io::ErrorKind::InvalidData, "bad scratch entry");
    let mut d = Decbuf::new(entry);
    let n = d.uvarint().map_err(bad)?;
    put_uvarint(out, n);
    for _ in 0..n * 2 {
        let s = d.uvarint().map_err(bad)?;
        let fin = remap
            .get(s as usize)
            .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, "bad symbol"))?;
        put_uvarint(out, u64::from(*fin));
    }
    read_chunk_metas(
        &mut d,
        MetaLayout::Absolute,
        Part::Section(IndexSection::Series),
        metas,
    )
    .ok()
    .filter(|()| d.is_empty())
    .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, "bad scratch metas"))?;
    // At least one meta: read_chunk_metas refuses none.
    let first_ref = metas.first().map_or(0, |m| m.chunk_ref.0);
    put_chunk_metas(
        out,
        metas,
        MetaLayout::Based {
            base: time_base,
            first_ref,
        },
    );
    Ok(first_ref)
}
