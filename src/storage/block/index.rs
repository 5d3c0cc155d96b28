//! The block `index` file: symbol table, series (labels as symbol refs and
//! chunk metas), postings, the postings offset table (label names and
//! values) and the TOC. Encoding here; [`IndexReader`] decodes it lazily
//! from a mapped file, bounds-checking every offset.
//!
//! Owns the index bytes only: chunk data belongs to `chunks.rs`, matcher
//! evaluation to `reader.rs`. Format: `docs/format/index.md`.

use std::ops::Range;
use std::path::{Path, PathBuf};

use crate::storage::encoding::{put_uvarint, put_varint, Decbuf};

use super::chunks::{frame_len, ChunkRef};
use super::corruption::{Corruption, IndexSection, Part};
use super::elias_fano::EliasFano;
use super::BlockError;

/// Magic number at the start of an index file.
pub const INDEX_MAGIC: u32 = 0x5444_4958; // "TDIX"
/// Version byte of the index format the writer writes. Readers also open
/// version 1 ([`INDEX_FORMAT_V1`]).
pub const INDEX_FORMAT_VERSION: u8 = 2;
/// The first index format: 8-byte series offsets, chunk metas with
/// absolute first times and references.
pub const INDEX_FORMAT_V1: u8 = 1;
/// Bytes of the version-2 series directory's header: series count, time
/// base, offset width.
const DIRECTORY_HEADER_LEN: usize = 17;
/// Bytes of magic + version.
pub(crate) const HEADER_LEN: usize = 5;
/// Number of sections listed in the TOC.
pub(crate) const NUM_SECTIONS: usize = 6;
/// TOC: (offset, length) per section, then a CRC.
pub(crate) const TOC_LEN: usize = NUM_SECTIONS * 16 + 4;
/// Bytes of one label-name entry and of one label-value entry.
const NAME_ENTRY_LEN: usize = 12;
const VALUE_ENTRY_LEN: usize = 12;

/// Section order in the file and in the TOC.
pub(crate) const SYMBOLS: usize = 0;
pub(crate) const SERIES: usize = 1;
pub(crate) const SERIES_OFFSETS: usize = 2;
pub(crate) const POSTINGS: usize = 3;
pub(crate) const LABEL_NAMES: usize = 4;
pub(crate) const LABEL_VALUES: usize = 5;

/// The time range and location of one chunk, as stored in a series entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ChunkMeta {
    pub(crate) mint: i64,
    pub(crate) maxt: i64,
    pub(crate) data_len: u64,
    pub(crate) chunk_ref: ChunkRef,
}

/// How a series entry stores its first chunk's time and reference; the
/// following chunks are stored the same way in both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MetaLayout {
    /// Version 1: `mint <varint>`, `ref <uvarint>` (segment << 32 | offset).
    Absolute,
    /// Version 2: `mint - base <uvarint>` (wrapping); the reference is
    /// not in the entry but in the series directory (`first_ref`), which
    /// codes the series' first references together: they increase with
    /// the series id, since a block's chunks are written series by series.
    Based {
        /// The index's time base (the block's smallest chunk mint).
        base: i64,
        /// The first chunk's reference.
        first_ref: u64,
    },
}

/// Appends the chunk metas of a series entry (count, then delta-encoded
/// metas) to `buf`. Metas must be time-ordered and non-overlapping.
pub(crate) fn put_chunk_metas(buf: &mut Vec<u8>, metas: &[ChunkMeta], layout: MetaLayout) {
    put_uvarint(buf, metas.len() as u64);
    let mut prev: Option<&ChunkMeta> = None;
    for m in metas {
        match (prev, layout) {
            (None, MetaLayout::Absolute) => put_varint(buf, m.mint),
            (None, MetaLayout::Based { base, .. }) => {
                put_uvarint(buf, m.mint.wrapping_sub(base) as u64);
            }
            (Some(p), _) => put_uvarint(buf, m.mint.wrapping_sub(p.maxt) as u64),
        }
        put_uvarint(buf, m.maxt.wrapping_sub(m.mint) as u64);
        put_uvarint(buf, m.data_len);
        match (prev, layout) {
            (None, MetaLayout::Absolute) => put_uvarint(buf, m.chunk_ref.0),
            (None, MetaLayout::Based { .. }) => {}
            (Some(p), _) => {
                let expected = p.chunk_ref.0.wrapping_add(frame_len(p.data_len));
                put_varint(buf, m.chunk_ref.0.wrapping_sub(expected) as i64);
            }
        }
        prev = Some(m);
    }
}

/// Decodes the chunk metas [`put_chunk_metas`] wrote for series `part`
/// into `out`, checking them (at least one, contiguous, in time order,
/// lengths in range); the error is the reason and `d`'s position then.
pub(crate) fn read_chunk_metas(
    d: &mut Decbuf<'_>,
    layout: MetaLayout,
    part: Part,
    out: &mut Vec<ChunkMeta>,
) -> Result<(), Corruption> {
    out.clear();
    let truncated = |source| Corruption::Truncated { part, source };
    let n = d.uvarint().map_err(truncated)?;
    // A meta takes at least three bytes (four but the first in version 2).
    if n == 0 || n > d.remaining() as u64 / 3 {
        return Err(Corruption::CountOutOfRange { part, count: n });
    }
    let mut prev: Option<ChunkMeta> = None;
    for _ in 0..n {
        let mint = match (prev, layout) {
            (None, MetaLayout::Absolute) => d.varint().map_err(truncated)?,
            (None, MetaLayout::Based { base, .. }) => {
                base.wrapping_add(d.uvarint().map_err(truncated)? as i64)
            }
            (Some(p), _) => {
                // Differences of i64s fit in u64: wrapping sums are exact.
                let delta = d.uvarint().map_err(truncated)?;
                let mint = p.maxt.wrapping_add(delta as i64);
                if mint <= p.maxt {
                    return Err(Corruption::NotContiguous { part });
                }
                mint
            }
        };
        let span = d.uvarint().map_err(truncated)?;
        let maxt = mint.wrapping_add(span as i64);
        if maxt < mint {
            return Err(Corruption::TimeOverflow { part });
        }
        let data_len = d.uvarint().map_err(truncated)?;
        if data_len == 0 || data_len > u64::from(u32::MAX) {
            return Err(Corruption::CountOutOfRange {
                part,
                count: data_len,
            });
        }
        let chunk_ref = match (prev, layout) {
            (None, MetaLayout::Absolute) => d.uvarint().map_err(truncated)?,
            (None, MetaLayout::Based { first_ref, .. }) => first_ref,
            (Some(p), _) => {
                let gap = d.varint().map_err(truncated)?;
                p.chunk_ref
                    .0
                    .wrapping_add(frame_len(p.data_len))
                    .wrapping_add(gap as u64)
            }
        };
        let m = ChunkMeta {
            mint,
            maxt,
            data_len,
            chunk_ref: ChunkRef(chunk_ref),
        };
        out.push(m);
        prev = Some(m);
    }
    Ok(())
}

/// One label name of the postings offset table, kept in memory.
#[derive(Debug, Clone, Copy)]
pub(crate) struct NameEntry {
    pub(crate) sym: u32,
    first: u32,
    count: u32,
}

/// A decoded series entry: labels as (name, value) symbol refs and chunk metas.
#[derive(Debug, Default)]
pub(crate) struct SeriesEntry {
    pub(crate) labels: Vec<(u32, u32)>,
    pub(crate) chunks: Vec<ChunkMeta>,
}

/// Lazy reader of an index file. Holds only section bounds, the offsets of
/// the symbols and the label names; everything else is read from the bytes
/// on demand, bounds-checked.
#[derive(Debug)]
pub(crate) struct IndexReader {
    path: PathBuf,
    sections: [Range<usize>; NUM_SECTIONS],
    /// Offset of each symbol, relative to the symbols section body.
    sym_offsets: Vec<u32>,
    names: Vec<NameEntry>,
    n_series: u64,
    n_values: u32,
    /// Where each series entry starts: version 1's offsets section, or
    /// the offsets of version 2's series directory.
    offsets: OffsetTable,
    /// The rest of the version-2 series directory; `None` in a version-1
    /// index.
    directory: Option<Directory>,
}

/// Fixed-width big-endian offsets of the series entries, relative to the
/// series section: 8 bytes each in version 1, 4 or 8 in version 2.
#[derive(Debug, Clone, Default)]
struct OffsetTable {
    /// Where the table is in the file (sized for every series at parse).
    at: Range<usize>,
    width: usize,
}

impl OffsetTable {
    /// Offset `i` (below the series count).
    fn get(&self, data: &[u8], i: u64) -> u64 {
        let at = self.at.start + i as usize * self.width;
        match self.width {
            4 => u64::from(u32_at(&data[at..])),
            _ => u64_at(&data[at..]),
        }
    }
}

/// The start of a postings list: its count and form, a decoder at its ids
/// and its file offset.
struct PostingsHeader<'a> {
    d: Decbuf<'a>,
    start: usize,
    n: u64,
    run: bool,
}

/// The version-2 series directory beside its offsets.
#[derive(Debug, Clone)]
struct Directory {
    /// The time base of first chunk metas.
    base: i64,
    /// Where the Elias–Fano coded first chunk references are in the file.
    first_refs: Range<usize>,
}

/// What [`check_index`] found in a valid index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexSummary {
    /// Number of series.
    pub series: u64,
    /// Number of chunk metas.
    pub chunks: u64,
    /// Number of distinct symbols.
    pub symbols: u64,
    /// Number of label name/value pairs with a postings list.
    pub postings: u64,
}

/// Parses `bytes` as a whole index file and walks every series and postings
/// list (the checks of [`super::Block::open`] minus those that need the
/// chunk segments). For fuzzing and tools.
///
/// # Errors
/// [`BlockError::Corrupt`] on any damage; never panics.
pub fn check_index(bytes: &[u8]) -> Result<IndexSummary, BlockError> {
    let r = IndexReader::parse(bytes, Path::new(super::INDEX_FILE))?;
    let chunks = r.check_all(bytes, |_| Ok(()))?;
    Ok(IndexSummary {
        series: r.n_series,
        chunks,
        symbols: r.sym_offsets.len() as u64,
        postings: u64::from(r.n_values),
    })
}

fn u32_at(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[..4]);
    u32::from_be_bytes(a)
}

fn u64_at(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_be_bytes(a)
}

impl IndexReader {
    fn corrupt(&self, offset: usize, reason: Corruption) -> BlockError {
        corrupt(&self.path, offset, reason)
    }

    /// Checks header, TOC and every section's CRC, loads symbol offsets and
    /// label names.
    pub(crate) fn parse(data: &[u8], path: &Path) -> Result<Self, BlockError> {
        let c = |offset: usize, reason: Corruption| corrupt(path, offset, reason);
        if data.len() < HEADER_LEN + TOC_LEN {
            return Err(c(
                0,
                Corruption::TooShort {
                    len: data.len() as u64,
                },
            ));
        }
        let magic = u32_at(data);
        if magic != INDEX_MAGIC {
            return Err(c(0, Corruption::BadMagic { got: magic }));
        }
        let version = data[4];
        if version != INDEX_FORMAT_VERSION && version != INDEX_FORMAT_V1 {
            return Err(BlockError::UnsupportedVersion {
                path: path.to_path_buf(),
                version: u64::from(data[4]),
            });
        }
        let toc_start = data.len() - TOC_LEN;
        let toc = &data[toc_start..];
        let stored = u32_at(&toc[TOC_LEN - 4..]);
        let got = crc32fast::hash(&toc[..TOC_LEN - 4]);
        if stored != got {
            return Err(c(
                toc_start,
                Corruption::ChecksumMismatch {
                    part: Part::Toc,
                    stored,
                    computed: got,
                },
            ));
        }
        let mut sections: [Range<usize>; NUM_SECTIONS] = Default::default();
        let mut min_start = HEADER_LEN;
        for ((i, section), kind) in sections.iter_mut().enumerate().zip(IndexSection::ALL) {
            let off = u64_at(&toc[i * 16..]);
            let len = u64_at(&toc[i * 16 + 8..]);
            let bounds = usize::try_from(off).ok().and_then(|off| {
                let end = off.checked_add(usize::try_from(len).ok()?)?;
                (off >= min_start && end.checked_add(4)? <= toc_start).then_some(off..end)
            });
            let Some(r) = bounds else {
                return Err(c(
                    toc_start + i * 16,
                    Corruption::OutOfBounds {
                        part: Part::Section(kind),
                    },
                ));
            };
            let stored = u32_at(&data[r.end..]);
            let got = crc32fast::hash(&data[r.clone()]);
            if stored != got {
                return Err(c(
                    r.end,
                    Corruption::ChecksumMismatch {
                        part: Part::Section(kind),
                        stored,
                        computed: got,
                    },
                ));
            }
            min_start = r.end + 4;
            *section = r;
        }
        let mut r = IndexReader {
            path: path.to_path_buf(),
            sections,
            sym_offsets: Vec::new(),
            names: Vec::new(),
            n_series: 0,
            n_values: 0,
            offsets: OffsetTable::default(),
            directory: None,
        };
        r.load_symbols(data)?;
        r.load_names(data)?;
        let offs = r.sections[SERIES_OFFSETS].clone();
        let bad_size = || {
            r.corrupt(
                offs.start,
                Corruption::BadSize {
                    part: Part::Section(IndexSection::SeriesOffsets),
                    size: offs.len() as u64,
                },
            )
        };
        if version == INDEX_FORMAT_V1 {
            if !offs.len().is_multiple_of(8) {
                return Err(bad_size());
            }
            r.n_series = (offs.len() / 8) as u64;
            r.offsets = OffsetTable {
                at: offs.clone(),
                width: 8,
            };
            return Ok(r);
        }
        // Version 2: the series directory.
        let body = &data[offs.clone()];
        if body.len() < DIRECTORY_HEADER_LEN {
            return Err(bad_size());
        }
        let n = u64_at(body);
        let base = u64_at(&body[8..]) as i64;
        let width = usize::from(body[16]);
        // Every series entry takes at least two bytes (label and chunk
        // counts); the offsets must fit the section.
        let split = (n <= r.sections[SERIES].len() as u64 / 2)
            .then(|| usize::try_from(n).ok()?.checked_mul(width))
            .flatten()
            .and_then(|l| DIRECTORY_HEADER_LEN.checked_add(l))
            .filter(|&end| end <= body.len() && (width == 4 || width == 8));
        let Some(split) = split else {
            return Err(r.corrupt(
                offs.start,
                Corruption::CountOutOfRange {
                    part: Part::Section(IndexSection::SeriesOffsets),
                    count: n,
                },
            ));
        };
        let directory = Directory {
            base,
            first_refs: offs.start + split..offs.end,
        };
        if EliasFano::new(&data[directory.first_refs.clone()], n).is_none() {
            return Err(r.corrupt(
                directory.first_refs.start,
                Corruption::CountOutOfRange {
                    part: Part::Section(IndexSection::SeriesOffsets),
                    count: n,
                },
            ));
        }
        r.n_series = n;
        r.offsets = OffsetTable {
            at: offs.start + DIRECTORY_HEADER_LEN..offs.start + split,
            width,
        };
        r.directory = Some(directory);
        Ok(r)
    }

    /// How series `id`'s entry stores its first chunk meta. `first_ref`
    /// reads its first chunk reference in a version-2 index (`None` when
    /// the references are damaged); a version-1 entry holds its own.
    fn meta_layout(
        &self,
        id: u64,
        first_ref: impl FnOnce() -> Option<u64>,
    ) -> Result<MetaLayout, BlockError> {
        let Some(dir) = &self.directory else {
            return Ok(MetaLayout::Absolute);
        };
        let first_ref = first_ref().ok_or_else(|| {
            self.corrupt(
                dir.first_refs.start,
                Corruption::OutOfBounds {
                    part: Part::Series(id),
                },
            )
        })?;
        Ok(MetaLayout::Based {
            base: dir.base,
            first_ref,
        })
    }

    /// The first chunk references of a version-2 index (`None` for version
    /// 1, and for references that cannot hold the series, which parse
    /// refuses).
    fn first_refs<'a>(&self, data: &'a [u8]) -> Option<EliasFano<'a>> {
        let dir = self.directory.as_ref()?;
        EliasFano::new(&data[dir.first_refs.clone()], self.n_series)
    }

    /// The file offset to report a problem of series `id`'s entry bounds at.
    fn directory_at(&self, id: u64) -> usize {
        let offs = &self.sections[SERIES_OFFSETS];
        match self.directory {
            None => offs.start + id as usize * 8,
            Some(_) => offs.start,
        }
    }

    fn load_symbols(&mut self, data: &[u8]) -> Result<(), BlockError> {
        let sec = self.sections[SYMBOLS].clone();
        let body = &data[sec.clone()];
        if u32::try_from(body.len()).is_err() {
            return Err(self.corrupt(
                sec.start,
                Corruption::BadSize {
                    part: Part::Section(IndexSection::Symbols),
                    size: body.len() as u64,
                },
            ));
        }
        let mut d = Decbuf::new(body);
        let n = d.be_u32().map_err(|source| {
            self.corrupt(
                sec.start,
                Corruption::Truncated {
                    part: Part::Section(IndexSection::Symbols),
                    source,
                },
            )
        })?;
        // Every symbol takes at least one byte: bound the allocation.
        if n as usize > d.remaining() {
            return Err(self.corrupt(
                sec.start,
                Corruption::CountOutOfRange {
                    part: Part::Section(IndexSection::Symbols),
                    count: u64::from(n),
                },
            ));
        }
        let mut offsets = Vec::with_capacity(n as usize);
        let mut prev: Option<&[u8]> = None;
        for i in 0..n {
            let at = d.position();
            let part = Part::Symbol(u64::from(i));
            let s = d.uvarint_bytes().map_err(|source| {
                self.corrupt(sec.start + at, Corruption::Truncated { part, source })
            })?;
            if std::str::from_utf8(s).is_err() {
                return Err(self.corrupt(sec.start + at, Corruption::NotUtf8 { part }));
            }
            if prev.is_some_and(|p| p >= s) {
                return Err(self.corrupt(sec.start + at, Corruption::OutOfOrder { part }));
            }
            prev = Some(s);
            offsets.push(at as u32);
        }
        if !d.is_empty() {
            return Err(self.corrupt(
                sec.start + d.position(),
                Corruption::TrailingBytes {
                    part: Part::Symbol(u64::from(n.saturating_sub(1))),
                    bytes: d.remaining() as u64,
                },
            ));
        }
        self.sym_offsets = offsets;
        Ok(())
    }

    fn load_names(&mut self, data: &[u8]) -> Result<(), BlockError> {
        let names = self.sections[LABEL_NAMES].clone();
        let values = self.sections[LABEL_VALUES].clone();
        let bad_size = |r: &Range<usize>, section| {
            self.corrupt(
                r.start,
                Corruption::BadSize {
                    part: Part::Section(section),
                    size: r.len() as u64,
                },
            )
        };
        if !names.len().is_multiple_of(NAME_ENTRY_LEN) {
            return Err(bad_size(&names, IndexSection::LabelNames));
        }
        if !values.len().is_multiple_of(VALUE_ENTRY_LEN) {
            return Err(bad_size(&values, IndexSection::LabelValues));
        }
        let n_values = u32::try_from(values.len() / VALUE_ENTRY_LEN)
            .map_err(|_| bad_size(&values, IndexSection::LabelValues))?;
        let mut out: Vec<NameEntry> = Vec::with_capacity(names.len() / NAME_ENTRY_LEN);
        let mut next_first = 0u32;
        for (i, e) in data[names.clone()].chunks_exact(NAME_ENTRY_LEN).enumerate() {
            let at = names.start + i * NAME_ENTRY_LEN;
            let entry = NameEntry {
                sym: u32_at(e),
                first: u32_at(&e[4..]),
                count: u32_at(&e[8..]),
            };
            let part = Part::LabelName;
            if entry.sym as usize >= self.sym_offsets.len() {
                return Err(self.corrupt(
                    at,
                    Corruption::RefOutOfRange {
                        part,
                        value: u64::from(entry.sym),
                    },
                ));
            }
            if out.last().is_some_and(|p| p.sym >= entry.sym) {
                return Err(self.corrupt(at, Corruption::OutOfOrder { part }));
            }
            if entry.first != next_first || entry.count == 0 {
                return Err(self.corrupt(at, Corruption::NotContiguous { part }));
            }
            next_first = entry
                .first
                .checked_add(entry.count)
                .filter(|&end| end <= n_values)
                .ok_or_else(|| {
                    self.corrupt(
                        at,
                        Corruption::CountOutOfRange {
                            part,
                            count: u64::from(entry.count),
                        },
                    )
                })?;
            out.push(entry);
        }
        if next_first != n_values {
            return Err(self.corrupt(
                values.start,
                Corruption::NotContiguous {
                    part: Part::Section(IndexSection::LabelValues),
                },
            ));
        }
        self.names = out;
        self.n_values = n_values;
        Ok(())
    }

    /// Number of series.
    pub(crate) fn num_series(&self) -> u64 {
        self.n_series
    }

    /// Number of symbols in the table.
    #[cfg(test)]
    pub(crate) fn symbols_len(&self) -> usize {
        self.sym_offsets.len()
    }

    /// Symbol `i`.
    pub(crate) fn symbol<'a>(&self, data: &'a [u8], i: u32) -> Result<&'a str, BlockError> {
        let sec = &self.sections[SYMBOLS];
        let off = *self.sym_offsets.get(i as usize).ok_or_else(|| {
            self.corrupt(
                sec.start,
                Corruption::RefOutOfRange {
                    part: Part::Section(IndexSection::Symbols),
                    value: u64::from(i),
                },
            )
        })?;
        let part = Part::Symbol(u64::from(i));
        let at = sec.start + off as usize;
        let body = data
            .get(at..sec.end)
            .ok_or_else(|| self.corrupt(at, Corruption::OutOfBounds { part }))?;
        let s = Decbuf::new(body)
            .uvarint_bytes()
            .map_err(|source| self.corrupt(at, Corruption::Truncated { part, source }))?;
        std::str::from_utf8(s).map_err(|_| self.corrupt(at, Corruption::NotUtf8 { part }))
    }

    /// The ref of symbol `s`, if present (binary search).
    pub(crate) fn find_symbol(&self, data: &[u8], s: &str) -> Result<Option<u32>, BlockError> {
        let (mut lo, mut hi) = (0usize, self.sym_offsets.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.symbol(data, mid as u32)?.cmp(s) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return Ok(Some(mid as u32)),
            }
        }
        Ok(None)
    }

    /// All label names (as symbol refs), ascending.
    pub(crate) fn names(&self) -> &[NameEntry] {
        &self.names
    }

    /// The label name entry of `name`.
    pub(crate) fn find_name(
        &self,
        data: &[u8],
        name: &str,
    ) -> Result<Option<NameEntry>, BlockError> {
        let Some(sym) = self.find_symbol(data, name)? else {
            return Ok(None);
        };
        Ok(self
            .names
            .binary_search_by_key(&sym, |e| e.sym)
            .ok()
            .map(|i| self.names[i]))
    }

    /// Value entry `i` of `name`: (value symbol, postings offset).
    pub(crate) fn value(
        &self,
        data: &[u8],
        name: &NameEntry,
        i: u32,
    ) -> Result<(u32, u64), BlockError> {
        let sec = &self.sections[LABEL_VALUES];
        let idx = name
            .first
            .checked_add(i)
            .filter(|_| i < name.count)
            .ok_or_else(|| {
                self.corrupt(
                    sec.start,
                    Corruption::RefOutOfRange {
                        part: Part::LabelValue,
                        value: u64::from(name.first).saturating_add(u64::from(i)),
                    },
                )
            })?;
        let at = sec.start + idx as usize * VALUE_ENTRY_LEN;
        let e = data
            .get(at..at + VALUE_ENTRY_LEN)
            .filter(|_| at + VALUE_ENTRY_LEN <= sec.end)
            .ok_or_else(|| {
                self.corrupt(
                    at,
                    Corruption::OutOfBounds {
                        part: Part::LabelValue,
                    },
                )
            })?;
        Ok((u32_at(e), u64_at(&e[4..])))
    }

    /// The position of `name`'s first value not less than `s` (its value
    /// count when there is none); values sort like their strings.
    pub(crate) fn first_value_at_least(
        &self,
        data: &[u8],
        name: &NameEntry,
        s: &str,
    ) -> Result<u32, BlockError> {
        let (mut lo, mut hi) = (0u32, name.count);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let (sym, _) = self.value(data, name, mid)?;
            if self.symbol(data, sym)? < s {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        Ok(lo)
    }

    /// Number of values of `name`.
    pub(crate) fn value_count(name: &NameEntry) -> u32 {
        name.count
    }

    /// The postings offset of `name=value`, if the pair exists.
    pub(crate) fn find_value(
        &self,
        data: &[u8],
        name: &NameEntry,
        value: &str,
    ) -> Result<Option<u64>, BlockError> {
        let Some(sym) = self.find_symbol(data, value)? else {
            return Ok(None);
        };
        let (mut lo, mut hi) = (0u32, name.count);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let (v, off) = self.value(data, name, mid)?;
            match v.cmp(&sym) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return Ok(Some(off)),
            }
        }
        Ok(None)
    }

    /// The length of the postings list at `offset`, without decoding it
    /// (the planner's cost).
    pub(crate) fn postings_len(&self, data: &[u8], offset: u64) -> Result<u64, BlockError> {
        Ok(self.postings_header(data, offset)?.n)
    }

    /// Whether the postings list at `offset` is stored as a run (version
    /// 2): its ids are consecutive, whatever its label name.
    pub(crate) fn postings_is_run(&self, data: &[u8], offset: u64) -> Result<bool, BlockError> {
        Ok(self.postings_header(data, offset)?.run)
    }

    /// The first id of the postings list at `offset`, without decoding the
    /// rest.
    pub(crate) fn postings_first(&self, data: &[u8], offset: u64) -> Result<u64, BlockError> {
        let mut h = self.postings_header(data, offset)?;
        let part = Part::Postings;
        h.d.uvarint()
            .map_err(|source| self.corrupt(h.start, Corruption::Truncated { part, source }))
    }

    /// The count and form of the postings list at `offset`, with a decoder
    /// at its ids. Version 1 stores `count`; version 2 `count << 1 | run`,
    /// a run being its first id alone (`docs/format/index.md`).
    fn postings_header<'a>(
        &self,
        data: &'a [u8],
        offset: u64,
    ) -> Result<PostingsHeader<'a>, BlockError> {
        let sec = &self.sections[POSTINGS];
        let start = usize::try_from(offset)
            .ok()
            .and_then(|o| sec.start.checked_add(o))
            .filter(|&s| s < sec.end)
            .ok_or_else(|| {
                self.corrupt(
                    sec.start,
                    Corruption::RefOutOfRange {
                        part: Part::LabelValue,
                        value: offset,
                    },
                )
            })?;
        let part = Part::Postings;
        let mut d = Decbuf::new(&data[start..sec.end]);
        let h = d
            .uvarint()
            .map_err(|source| self.corrupt(start, Corruption::Truncated { part, source }))?;
        let (n, run) = match self.directory {
            None => (h, false),
            Some(_) => (h >> 1, h & 1 == 1),
        };
        // A list holds at least one id, each in a byte at least (a run its
        // first one only).
        let room = if run { 1 } else { n };
        if n == 0 || room > d.remaining() as u64 || n > self.n_series {
            return Err(self.corrupt(start, Corruption::CountOutOfRange { part, count: n }));
        }
        Ok(PostingsHeader { d, start, n, run })
    }

    /// The postings list at `offset` of the postings section: ascending ids.
    pub(crate) fn postings(&self, data: &[u8], offset: u64) -> Result<Vec<u64>, BlockError> {
        let PostingsHeader {
            mut d,
            start,
            n,
            run,
        } = self.postings_header(data, offset)?;
        let part = Part::Postings;
        let err = |d: &Decbuf<'_>, reason| self.corrupt(start + d.position(), reason);
        let truncated = |source| Corruption::Truncated { part, source };
        if run {
            let first = d.uvarint().map_err(|e| err(&d, truncated(e)))?;
            // n >= 1 and n <= n_series: the run must end inside the block.
            let end = first.checked_add(n).filter(|&end| end <= self.n_series);
            let Some(end) = end else {
                return Err(err(&d, Corruption::RefOutOfRange { part, value: first }));
            };
            return Ok((first..end).collect());
        }
        let mut out = Vec::with_capacity(n as usize);
        let mut id = 0u64;
        for i in 0..n {
            let delta = d.uvarint().map_err(|e| err(&d, truncated(e)))?;
            if i > 0 && delta == 0 {
                return Err(err(&d, Corruption::OutOfOrder { part }));
            }
            id = id
                .checked_add(delta)
                .filter(|&id| id < self.n_series)
                .ok_or_else(|| {
                    err(
                        &d,
                        Corruption::RefOutOfRange {
                            part,
                            value: id.saturating_add(delta),
                        },
                    )
                })?;
            out.push(id);
        }
        Ok(out)
    }

    /// Byte range of series `id`'s entry.
    fn series_range(&self, data: &[u8], id: u64) -> Result<Range<usize>, BlockError> {
        let offs = &self.sections[SERIES_OFFSETS];
        let series = &self.sections[SERIES];
        if id >= self.n_series {
            return Err(self.corrupt(
                offs.start,
                Corruption::RefOutOfRange {
                    part: Part::Section(IndexSection::SeriesOffsets),
                    value: id,
                },
            ));
        }
        let start = self.offsets.get(data, id);
        let end = if id + 1 < self.n_series {
            self.offsets.get(data, id + 1)
        } else {
            series.len() as u64
        };
        let at = self.directory_at(id);
        if start > end || end > series.len() as u64 {
            return Err(self.corrupt(
                at,
                Corruption::OutOfBounds {
                    part: Part::Series(id),
                },
            ));
        }
        Ok(series.start + start as usize..series.start + end as usize)
    }

    /// Decodes the labels of series `id`'s entry into `labels` (reusing the
    /// buffer), leaving its chunk metas unread: what matching and the
    /// label calls need.
    pub(crate) fn series_labels_into(
        &self,
        data: &[u8],
        id: u64,
        labels: &mut Vec<(u32, u32)>,
    ) -> Result<(), BlockError> {
        self.read_labels(data, id, labels).map(|_| ())
    }

    /// Reads the label part of series `id`'s entry into `labels`; returns a
    /// decoder at its chunk part and the entry's offset in the file.
    fn read_labels<'a>(
        &self,
        data: &'a [u8],
        id: u64,
        labels: &mut Vec<(u32, u32)>,
    ) -> Result<(Decbuf<'a>, usize), BlockError> {
        let range = self.series_range(data, id)?;
        self.read_labels_in(data, id, range, labels)
    }

    /// [`Self::read_labels`] of the entry at `range`.
    fn read_labels_in<'a>(
        &self,
        data: &'a [u8],
        id: u64,
        range: Range<usize>,
        labels: &mut Vec<(u32, u32)>,
    ) -> Result<(Decbuf<'a>, usize), BlockError> {
        let start = range.start;
        let mut d = Decbuf::new(&data[range]);
        let part = Part::Series(id);
        let err = |d: &Decbuf<'_>, reason| self.corrupt(start + d.position(), reason);
        let truncated = |source| Corruption::Truncated { part, source };
        labels.clear();
        let n_syms = self.sym_offsets.len() as u64;
        let n = d.uvarint().map_err(|x| err(&d, truncated(x)))?;
        if n > d.remaining() as u64 / 2 {
            return Err(err(&d, Corruption::CountOutOfRange { part, count: n }));
        }
        for _ in 0..n {
            let name = d.uvarint().map_err(|x| err(&d, truncated(x)))?;
            let value = d.uvarint().map_err(|x| err(&d, truncated(x)))?;
            if name >= n_syms || value >= n_syms {
                let value = if name >= n_syms { name } else { value };
                return Err(err(&d, Corruption::RefOutOfRange { part, value }));
            }
            if labels.last().is_some_and(|&(p, _)| u64::from(p) >= name) {
                return Err(err(&d, Corruption::OutOfOrder { part }));
            }
            labels.push((name as u32, value as u32));
        }
        Ok((d, start))
    }

    /// Decodes series `id`'s entry into `e` (reusing its buffers).
    pub(crate) fn series_into(
        &self,
        data: &[u8],
        id: u64,
        e: &mut SeriesEntry,
    ) -> Result<(), BlockError> {
        let range = self.series_range(data, id)?;
        let layout = self.meta_layout(id, || self.first_refs(data)?.get(id))?;
        self.decode_series(data, id, range, layout, e)
    }

    /// Decodes the entry of series `id` at `range` into `e`.
    fn decode_series(
        &self,
        data: &[u8],
        id: u64,
        range: Range<usize>,
        layout: MetaLayout,
        e: &mut SeriesEntry,
    ) -> Result<(), BlockError> {
        let (mut d, start) = self.read_labels_in(data, id, range, &mut e.labels)?;
        let part = Part::Series(id);
        read_chunk_metas(&mut d, layout, part, &mut e.chunks)
            .map_err(|reason| self.corrupt(start + d.position(), reason))?;
        let err = |d: &Decbuf<'_>, reason| self.corrupt(start + d.position(), reason);
        if !d.is_empty() {
            return Err(err(
                &d,
                Corruption::TrailingBytes {
                    part,
                    bytes: d.remaining() as u64,
                },
            ));
        }
        Ok(())
    }

    /// Walks every series (labels in strictly increasing order, entries
    /// tiling the section) and every postings list; calls `on_chunk` for
    /// each chunk meta in file order. Returns the number of chunks.
    pub(crate) fn check_all(
        &self,
        data: &[u8],
        mut on_chunk: impl FnMut(&ChunkMeta) -> Result<(), BlockError>,
    ) -> Result<u64, BlockError> {
        let offs = &self.sections[SERIES_OFFSETS];
        if self.n_series > 0 && self.offsets.get(data, 0) != 0 {
            return Err(self.corrupt(
                offs.start,
                Corruption::NotContiguous {
                    part: Part::Series(0),
                },
            ));
        }
        let mut prev = SeriesEntry::default();
        let mut cur = SeriesEntry::default();
        let mut chunks = 0u64;
        // The first references in id order: one forward step each instead
        // of a random lookup, checking every sampled position on the way.
        let mut first_refs = self.first_refs(data).map(|ef| ef.iter());
        for id in 0..self.n_series {
            let range = self.series_range(data, id)?;
            let layout = self.meta_layout(id, || first_refs.as_mut()?.next_value())?;
            self.decode_series(data, id, range, layout, &mut cur)?;
            // Symbol refs sort like their strings, so this is label order.
            if id > 0 && prev.labels >= cur.labels {
                let at = self.directory_at(id);
                return Err(self.corrupt(
                    at,
                    Corruption::OutOfOrder {
                        part: Part::Series(id),
                    },
                ));
            }
            for m in &cur.chunks {
                on_chunk(m)?;
            }
            chunks += cur.chunks.len() as u64;
            std::mem::swap(&mut prev, &mut cur);
        }
        for name in &self.names {
            for i in 0..name.count {
                let (sym, off) = self.value(data, name, i)?;
                if sym as usize >= self.sym_offsets.len() {
                    let at = self.sections[LABEL_VALUES].start + (name.first + i) as usize * 12;
                    return Err(self.corrupt(
                        at,
                        Corruption::RefOutOfRange {
                            part: Part::LabelValue,
                            value: u64::from(sym),
                        },
                    ));
                }
                if i > 0 && self.value(data, name, i - 1)?.0 >= sym {
                    let at = self.sections[LABEL_VALUES].start + (name.first + i) as usize * 12;
                    return Err(self.corrupt(
                        at,
                        Corruption::OutOfOrder {
                            part: Part::LabelValue,
                        },
                    ));
                }
                self.postings(data, off)?;
            }
        }
        Ok(chunks)
    }
}

fn corrupt(path: &Path, offset: usize, reason: Corruption) -> BlockError {
    BlockError::Corrupt {
        path: path.to_path_buf(),
        offset: offset as u64,
        reason,
    }
}
