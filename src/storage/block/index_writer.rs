//! The block `index` file's writer, typed by stage: symbols, then series
//! (which also writes the series directory), then postings (which also writes
//! the postings offset table and the TOC). Each stage is its own type and
//! finishing a stage is the only way to get the next, so the compiler
//! refuses any other section order (`docs/format/index.md`).
//!
//! Owns the index bytes as they are written: section framing, per-section
//! CRCs, the TOC and the format limits. Must not know where symbols,
//! series entries or postings come from (that is `writer.rs`), nor read an
//! index (`index.rs`).

use std::io::{self, Write};
use std::marker::PhantomData;

use crate::storage::encoding::{put_be_u32, put_be_u64, put_uvarint};

use super::elias_fano;
use super::index::{
    HEADER_LEN, INDEX_FORMAT_VERSION, INDEX_MAGIC, LABEL_NAMES, LABEL_VALUES, NUM_SECTIONS,
    POSTINGS, SERIES, SERIES_OFFSETS, SYMBOLS, TOC_LEN,
};

/// Bytes gathered before they are handed to the underlying writer.
const FLUSH_AT: usize = 64 << 10;

/// Why the index could not be written.
#[derive(Debug, thiserror::Error)]
pub(crate) enum IndexWriteError {
    /// The underlying writer failed.
    #[error(transparent)]
    Io(#[from] io::Error),
    /// A section or count exceeds what the format can address.
    #[error("{what} is {size}, more than the index format's limit of {max}")]
    TooLarge {
        /// What overflowed.
        what: &'static str,
        /// Its size.
        size: u64,
        /// The format's limit.
        max: u64,
    },
}

/// Stage marker: the symbol table is next.
pub(crate) struct Symbols;
/// Stage marker: series entries are next.
pub(crate) struct Series;
/// Stage marker: postings lists are next.
pub(crate) struct Postings;

/// Writes one index file, one section per stage `S`.
pub(crate) struct IndexWriter<W: Write, S> {
    w: W,
    /// Bytes written so far (the file offset).
    pos: u64,
    /// CRC of the current section's body.
    crc: crc32fast::Hasher,
    /// File offset of the current section's body.
    section_start: u64,
    /// (offset, length) of each finished section.
    toc: [(u64, u64); NUM_SECTIONS],
    /// Bytes not yet handed to `w`.
    buf: Vec<u8>,
    /// Series stage: each series entry's offset in the series section.
    series_offsets: Vec<u64>,
    /// Series stage: each series' first chunk reference.
    first_refs: Vec<u64>,
    /// Write 8-byte series offsets even when 4 would do (tests of the
    /// reader's wide path; the writer chooses 8 only past 4 GiB).
    wide_offsets: bool,
    /// Postings stage: (name symbol, value symbol, offset) of each list.
    postings_table: Vec<(u32, u32, u64)>,
    _stage: PhantomData<S>,
}

impl<W: Write, S> IndexWriter<W, S> {
    fn next_stage<T>(self) -> IndexWriter<W, T> {
        IndexWriter {
            w: self.w,
            pos: self.pos,
            crc: self.crc,
            section_start: self.section_start,
            toc: self.toc,
            buf: self.buf,
            series_offsets: self.series_offsets,
            first_refs: self.first_refs,
            wide_offsets: self.wide_offsets,
            postings_table: self.postings_table,
            _stage: PhantomData,
        }
    }

    /// Hands the buffered bytes to the writer, counting them into the
    /// position and the section's CRC.
    fn flush_buf(&mut self) -> io::Result<()> {
        self.w.write_all(&self.buf)?;
        self.crc.update(&self.buf);
        self.pos += self.buf.len() as u64;
        self.buf.clear();
        Ok(())
    }

    fn maybe_flush(&mut self) -> io::Result<()> {
        if self.buf.len() >= FLUSH_AT {
            self.flush_buf()?;
        }
        Ok(())
    }

    /// Position relative to the current section's body start.
    fn section_pos(&self) -> u64 {
        self.pos + self.buf.len() as u64 - self.section_start
    }

    fn begin_section(&mut self) -> io::Result<()> {
        self.flush_buf()?;
        self.crc = crc32fast::Hasher::new();
        self.section_start = self.pos;
        Ok(())
    }

    /// Ends `section`: records it in the TOC and appends its CRC.
    fn end_section(&mut self, section: usize) -> io::Result<()> {
        self.flush_buf()?;
        let crc = std::mem::take(&mut self.crc).finalize();
        self.toc[section] = (self.section_start, self.pos - self.section_start);
        self.w.write_all(&crc.to_be_bytes())?;
        self.pos += 4;
        Ok(())
    }
}

impl<W: Write> IndexWriter<W, Symbols> {
    /// Writes the header and starts the symbol table.
    pub(crate) fn new(w: W) -> io::Result<Self> {
        let mut header = Vec::with_capacity(HEADER_LEN);
        put_be_u32(&mut header, INDEX_MAGIC);
        header.push(INDEX_FORMAT_VERSION);
        let mut s = Self {
            w,
            pos: 0,
            crc: crc32fast::Hasher::new(),
            section_start: 0,
            toc: [(0, 0); NUM_SECTIONS],
            buf: header,
            series_offsets: Vec::new(),
            first_refs: Vec::new(),
            wide_offsets: false,
            postings_table: Vec::new(),
            _stage: PhantomData,
        };
        s.flush_buf()?;
        Ok(s)
    }

    /// Writes the symbol table: `symbols` sorted ascending, numbered in
    /// that order. Then series entries are next.
    ///
    /// # Errors
    /// I/O, or [`IndexWriteError::TooLarge`] past 2^32 symbols or a symbol
    /// table over 4 GiB (symbol refs are 32-bit offsets).
    pub(crate) fn write_symbols<'a>(
        mut self,
        symbols: impl ExactSizeIterator<Item = &'a str>,
    ) -> Result<IndexWriter<W, Series>, IndexWriteError> {
        let n = symbols.len() as u64;
        let n = u32::try_from(n).map_err(|_| IndexWriteError::TooLarge {
            what: "symbol count",
            size: n,
            max: u64::from(u32::MAX),
        })?;
        self.begin_section()?;
        put_be_u32(&mut self.buf, n);
        for s in symbols {
            put_uvarint(&mut self.buf, s.len() as u64);
            self.buf.extend_from_slice(s.as_bytes());
            self.maybe_flush()?;
        }
        self.end_section(SYMBOLS)?;
        let size = self.toc[SYMBOLS].1;
        if size > u64::from(u32::MAX) {
            return Err(IndexWriteError::TooLarge {
                what: "symbol table bytes",
                size,
                max: u64::from(u32::MAX),
            });
        }
        self.begin_section()?;
        Ok(self.next_stage())
    }
}

impl<W: Write> IndexWriter<W, Series> {
    /// Appends one series entry (labels as final symbol refs, then chunk
    /// metas without the first reference), already encoded, and the
    /// reference of its first chunk. Series come in label order; their ids
    /// are their positions.
    pub(crate) fn add_series(&mut self, entry: &[u8], first_ref: u64) -> io::Result<()> {
        self.series_offsets.push(self.section_pos());
        self.first_refs.push(first_ref);
        self.buf.extend_from_slice(entry);
        self.maybe_flush()
    }

    /// Ends the series section, writes the series directory (the count,
    /// `time_base` — what the entries' first chunk times are relative to —,
    /// the entries' offsets, 4 bytes each when the series section allows,
    /// and the first chunk references, Elias–Fano coded); then postings are
    /// next.
    ///
    /// # Errors
    /// I/O, or `InvalidInput` when the first references do not increase
    /// with the series (a caller bug: a block's chunks are written series by
    /// series).
    pub(crate) fn finish_series(mut self, time_base: i64) -> io::Result<IndexWriter<W, Postings>> {
        self.end_section(SERIES)?;
        self.begin_section()?;
        let offsets = std::mem::take(&mut self.series_offsets);
        let first_refs = std::mem::take(&mut self.first_refs);
        if first_refs.windows(2).any(|w| w[0] > w[1]) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "first chunk references out of series order",
            ));
        }
        put_be_u64(&mut self.buf, offsets.len() as u64);
        put_be_u64(&mut self.buf, time_base as u64);
        // Offsets are read at random (a query's candidates), so they keep a
        // fixed width: one load each.
        let narrow = !self.wide_offsets && offsets.last().is_none_or(|&o| o <= u64::from(u32::MAX));
        self.buf.push(if narrow { 4 } else { 8 });
        for &o in &offsets {
            if narrow {
                put_be_u32(&mut self.buf, o as u32);
            } else {
                put_be_u64(&mut self.buf, o);
            }
            self.maybe_flush()?;
        }
        elias_fano::encode(&first_refs, &mut self.buf);
        drop((offsets, first_refs));
        self.flush_buf()?;
        self.end_section(SERIES_OFFSETS)?;
        self.begin_section()?;
        Ok(self.next_stage())
    }
}

impl<W: Write> IndexWriter<W, Postings> {
    /// Appends the postings list of label `name`=`value` (final symbol
    /// refs): ascending series ids, delta-encoded. Lists come in (name,
    /// value) order.
    pub(crate) fn add_postings(&mut self, name: u32, value: u32, ids: &[u32]) -> io::Result<()> {
        self.postings_table.push((name, value, self.section_pos()));
        let n = ids.len() as u64;
        // Ascending and distinct, so consecutive exactly when the last is
        // the first plus the count less one: then the first id alone (a
        // block's lists of its first label name always are).
        let run = match (ids.first(), ids.last()) {
            (Some(&a), Some(&b)) => b.checked_sub(a).is_some_and(|d| u64::from(d) + 1 == n),
            _ => false,
        };
        put_uvarint(&mut self.buf, n << 1 | u64::from(run));
        if run {
            put_uvarint(&mut self.buf, u64::from(ids[0]));
        } else {
            let mut prev = 0u32;
            for &id in ids {
                put_uvarint(&mut self.buf, u64::from(id.wrapping_sub(prev)));
                prev = id;
            }
        }
        self.maybe_flush()
    }

    /// Ends the postings section, writes the postings offset table (label
    /// names, then label values) and the TOC. Returns the writer and the
    /// file's size.
    ///
    /// # Errors
    /// I/O, or [`IndexWriteError::TooLarge`] past 2^32 postings lists.
    pub(crate) fn finish(mut self) -> Result<(W, u64), IndexWriteError> {
        self.end_section(POSTINGS)?;
        let table = std::mem::take(&mut self.postings_table);
        let lists = u32::try_from(table.len()).map_err(|_| IndexWriteError::TooLarge {
            what: "postings list count",
            size: table.len() as u64,
            max: u64::from(u32::MAX),
        })?;
        self.write_label_names(&table)?;
        self.write_label_values(&table)?;
        debug_assert_eq!(lists as usize, table.len());
        self.write_toc()
    }

    /// One entry per label name: its symbol, the index of its first value
    /// entry and how many values it has.
    fn write_label_names(&mut self, table: &[(u32, u32, u64)]) -> io::Result<()> {
        self.begin_section()?;
        let mut first = 0usize;
        for group in table.chunk_by(|a, b| a.0 == b.0) {
            put_be_u32(&mut self.buf, group[0].0);
            // Both fit: the table's length was checked against u32.
            put_be_u32(&mut self.buf, first as u32);
            put_be_u32(&mut self.buf, group.len() as u32);
            first += group.len();
            self.maybe_flush()?;
        }
        self.end_section(LABEL_NAMES)
    }

    /// One entry per (name, value): the value's symbol and the offset of
    /// its postings list.
    fn write_label_values(&mut self, table: &[(u32, u32, u64)]) -> io::Result<()> {
        self.begin_section()?;
        for &(_, value, offset) in table {
            put_be_u32(&mut self.buf, value);
            put_be_u64(&mut self.buf, offset);
            self.maybe_flush()?;
        }
        self.end_section(LABEL_VALUES)
    }

    fn write_toc(mut self) -> Result<(W, u64), IndexWriteError> {
        let mut toc = Vec::with_capacity(TOC_LEN);
        for (off, len) in self.toc {
            put_be_u64(&mut toc, off);
            put_be_u64(&mut toc, len);
        }
        let crc = crc32fast::hash(&toc);
        put_be_u32(&mut toc, crc);
        self.w.write_all(&toc)?;
        self.pos += toc.len() as u64;
        Ok((self.w, self.pos))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::block::index::{
        put_chunk_metas, ChunkMeta, IndexReader, MetaLayout, SeriesEntry,
    };
    use crate::storage::block::ChunkRef;
    use std::path::Path;

    /// A three-series index, with 4- or 8-byte series offsets.
    fn index(wide: bool) -> Vec<u8> {
        let w = IndexWriter::new(Vec::new()).unwrap();
        let mut w = w.write_symbols(["a", "b", "c", "x"].into_iter()).unwrap();
        w.wide_offsets = wide;
        let base = 1_000;
        for (i, v) in [1u32, 2, 3].into_iter().enumerate() {
            let meta = ChunkMeta {
                mint: base + i as i64,
                maxt: base + 10,
                data_len: 20,
                chunk_ref: ChunkRef(1 << 32 | (8 + 25 * i as u64)),
            };
            let mut entry = Vec::new();
            put_uvarint(&mut entry, 1);
            put_uvarint(&mut entry, 3);
            put_uvarint(&mut entry, u64::from(v) - 1);
            let layout = MetaLayout::Based {
                base,
                first_ref: meta.chunk_ref.0,
            };
            put_chunk_metas(&mut entry, &[meta], layout);
            w.add_series(&entry, meta.chunk_ref.0).unwrap();
        }
        let mut w = w.finish_series(base).unwrap();
        // a="b": ids 0 and 2 (deltas); a="c": 0, 1, 2 (a run).
        w.add_postings(0, 1, &[0, 2]).unwrap();
        w.add_postings(0, 2, &[0, 1, 2]).unwrap();
        for (v, id) in [(0u32, 0u32), (1, 1), (2, 2)] {
            w.add_postings(3, v, &[id]).unwrap();
        }
        w.finish().unwrap().0
    }

    #[test]
    fn postings_of_consecutive_ids_are_runs() {
        let bytes = index(false);
        let r = IndexReader::parse(&bytes, Path::new("index")).unwrap();
        let a = r.find_name(&bytes, "a").unwrap().unwrap();
        let list = |v: &str| r.find_value(&bytes, &a, v).unwrap().unwrap();
        let (gappy, run) = (list("b"), list("c"));
        assert_eq!(r.postings(&bytes, gappy).unwrap(), vec![0, 2]);
        assert!(!r.postings_is_run(&bytes, gappy).unwrap());
        assert_eq!(r.postings(&bytes, run).unwrap(), vec![0, 1, 2]);
        assert!(r.postings_is_run(&bytes, run).unwrap());
        assert_eq!(r.postings_len(&bytes, run).unwrap(), 3);
        assert_eq!(r.postings_first(&bytes, run).unwrap(), 0);
        assert_eq!(r.check_all(&bytes, |_| Ok(())).unwrap(), 3);
    }

    #[test]
    fn series_offsets_read_back_at_either_width() {
        let narrow = index(false);
        let wide = index(true);
        assert_eq!(wide.len(), narrow.len() + 3 * 4, "4 more bytes a series");
        for bytes in [narrow, wide] {
            let r = IndexReader::parse(&bytes, Path::new("index")).unwrap();
            assert_eq!(r.num_series(), 3);
            let mut e = SeriesEntry::default();
            for id in 0..3u64 {
                r.series_into(&bytes, id, &mut e).unwrap();
                assert_eq!(e.labels, vec![(3, id as u32)]);
                assert_eq!(e.chunks[0].mint, 1_000 + id as i64);
                assert_eq!(e.chunks[0].chunk_ref.0, 1 << 32 | (8 + 25 * id));
            }
            assert_eq!(r.check_all(&bytes, |_| Ok(())).unwrap(), 3);
        }
    }
}
