//! Chunk segment files of a block (`chunks/000001`, ...): the framing of
//! each chunk (length, encoding byte, CRC) around the codec's bytes, the
//! streaming writer that cuts segments, and the memory-mapped reader.
//!
//! Owns the framing only: the chunk bytes themselves belong to
//! [`crate::storage::chunk`], which chunk belongs to which series to the
//! index. The one `unsafe` of the storage layer (the mmap) lives here.
//! Format: `docs/format/chunks-segment.md`.

use std::fmt;
use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use memmap2::Mmap;

use super::corruption::{Corruption, Part};
use super::remote::FetchBatch;
use super::BlockError;
use crate::model::Sample;
use crate::storage::chunk::{self, Encoding};
use crate::storage::encoding::{put_be_u32, put_uvarint, Decbuf};
use crate::storage::tombstones::sync_dir;

/// Magic number at the start of every chunk segment file.
pub const SEGMENT_MAGIC: u32 = 0x5444_4348; // "TDCH"
/// Version byte of the segment format.
pub const SEGMENT_FORMAT_VERSION: u8 = 1;
/// Bytes of the segment header: magic, version, 3 bytes of zero padding.
pub const SEGMENT_HEADER_LEN: usize = 8;
/// A segment is cut before a chunk that would take it past this size (a
/// chunk larger than this alone gets a segment of its own).
pub const SEGMENT_MAX_SIZE: u64 = 512 << 20;

/// Where a chunk lives in a block: `segment << 32 | offset`, the offset of
/// the chunk's length field in segment file `chunks/{segment:06}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ChunkRef(pub u64);

impl ChunkRef {
    /// The ref of the chunk at `offset` in `segment`.
    pub fn new(segment: u32, offset: u32) -> Self {
        Self((u64::from(segment) << 32) | u64::from(offset))
    }
    /// Segment number (the file name, from 1).
    pub fn segment(self) -> u32 {
        (self.0 >> 32) as u32
    }
    /// Byte offset in the segment.
    pub fn offset(self) -> u32 {
        self.0 as u32
    }
}

impl fmt::Display for ChunkRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:06}@{}", self.segment(), self.offset())
    }
}

/// Bytes a chunk of `data_len` bytes takes in a segment with its framing.
pub(crate) fn frame_len(data_len: u64) -> u64 {
    crate::storage::encoding::uvarint_len(data_len) as u64 + 1 + data_len + 4
}

/// The file name of segment `n`.
pub(crate) fn segment_name(n: u32) -> String {
    format!("{n:06}")
}

/// Streams framed chunks into numbered segment files; holds one buffered
/// file at a time, never the chunks.
pub(crate) struct SegmentWriter {
    dir: PathBuf,
    max_size: u64,
    cur: Option<(u32, BufWriter<File>, u64)>,
    done: Vec<u32>,
    frame: Vec<u8>,
    /// Bytes written over all segments (headers included).
    pub(crate) total_bytes: u64,
}

impl SegmentWriter {
    /// Writes segments into `dir` (the block's `chunks/`, already created).
    pub(crate) fn new(dir: PathBuf, max_size: u64) -> Self {
        Self {
            dir,
            max_size,
            cur: None,
            done: Vec::new(),
            frame: Vec::new(),
            total_bytes: 0,
        }
    }

    /// Whether a chunk taking `framed_len` bytes goes into a new segment.
    fn needs_cut(&self, framed_len: u64) -> bool {
        match &self.cur {
            None => true,
            Some((_, _, size)) => {
                *size > SEGMENT_HEADER_LEN as u64 && size + framed_len > self.max_size
            }
        }
    }

    /// The segment a chunk of `data_len` bytes written next would land in.
    pub(crate) fn segment_for(&self, data_len: usize) -> u32 {
        let cur = self.cur.as_ref().map_or(0, |c| c.0);
        if self.needs_cut(frame_len(data_len as u64)) {
            cur + 1
        } else {
            cur
        }
    }

    /// Appends one chunk and returns its ref.
    pub(crate) fn write(
        &mut self,
        encoding: Encoding,
        data: &[u8],
    ) -> Result<ChunkRef, BlockError> {
        let encoding = encoding.to_byte();
        let len = frame_len(data.len() as u64);
        if len > u64::from(u32::MAX) - SEGMENT_HEADER_LEN as u64 {
            return Err(BlockError::TooLarge {
                what: "chunk",
                size: data.len() as u64,
                max: u64::from(u32::MAX) - SEGMENT_HEADER_LEN as u64 - 16,
            });
        }
        if self.needs_cut(len) {
            self.cut()?;
        }
        let Some((seg, w, size)) = self.cur.as_mut() else {
            unreachable!("cut() opened a segment");
        };
        // A ref's offset is 32 bits; a segment past 4 GiB gets no more chunks.
        let offset = u32::try_from(*size).map_err(|_| BlockError::TooLarge {
            what: "chunk segment",
            size: *size,
            max: u64::from(u32::MAX),
        })?;
        self.frame.clear();
        put_uvarint(&mut self.frame, data.len() as u64);
        self.frame.push(encoding);
        let mut h = crc32fast::Hasher::new();
        h.update(&[encoding]);
        h.update(data);
        let crc = h.finalize();
        let path = self.dir.join(segment_name(*seg));
        let io = |source| BlockError::Io {
            op: "write chunk segment",
            path: path.clone(),
            source,
        };
        w.write_all(&self.frame).map_err(io)?;
        w.write_all(data).map_err(io)?;
        w.write_all(&crc.to_be_bytes()).map_err(io)?;
        *size += len;
        self.total_bytes += len;
        Ok(ChunkRef::new(*seg, offset))
    }

    fn cut(&mut self) -> Result<(), BlockError> {
        let next = match self.cur.take() {
            Some((seg, w, _)) => {
                self.close(seg, w)?;
                seg + 1
            }
            None => 1,
        };
        let path = self.dir.join(segment_name(next));
        let f = File::create_new(&path).map_err(|source| BlockError::Io {
            op: "create chunk segment",
            path: path.clone(),
            source,
        })?;
        let mut w = BufWriter::with_capacity(crate::storage::FILE_BUFFER_SIZE, f);
        let mut header = Vec::with_capacity(SEGMENT_HEADER_LEN);
        put_be_u32(&mut header, SEGMENT_MAGIC);
        header.extend_from_slice(&[SEGMENT_FORMAT_VERSION, 0, 0, 0]);
        w.write_all(&header).map_err(|source| BlockError::Io {
            op: "write chunk segment",
            path,
            source,
        })?;
        self.total_bytes += SEGMENT_HEADER_LEN as u64;
        self.cur = Some((next, w, SEGMENT_HEADER_LEN as u64));
        Ok(())
    }

    fn close(&mut self, seg: u32, w: BufWriter<File>) -> Result<(), BlockError> {
        let path = self.dir.join(segment_name(seg));
        let f = w.into_inner().map_err(|e| BlockError::Io {
            op: "flush chunk segment",
            path: path.clone(),
            source: e.into_error(),
        })?;
        f.sync_all().map_err(|source| BlockError::Io {
            op: "fsync chunk segment",
            path,
            source,
        })?;
        self.done.push(seg);
        Ok(())
    }

    /// Flushes and fsyncs the last segment and the directory.
    pub(crate) fn finish(mut self) -> Result<u64, BlockError> {
        if let Some((seg, w, _)) = self.cur.take() {
            self.close(seg, w)?;
        }
        sync_dir(&self.dir).map_err(|source| BlockError::Io {
            op: "fsync chunks directory",
            path: self.dir.clone(),
            source,
        })?;
        Ok(self.total_bytes)
    }
}

/// One memory-mapped segment file.
pub(crate) struct Segment {
    pub(crate) path: PathBuf,
    map: Mmap,
}

impl Segment {
    /// Maps `path` and checks its header.
    pub(crate) fn open(path: PathBuf) -> Result<Self, BlockError> {
        let f = File::open(&path).map_err(|source| BlockError::Io {
            op: "open chunk segment",
            path: path.clone(),
            source,
        })?;
        let len = f
            .metadata()
            .map_err(|source| BlockError::Io {
                op: "stat chunk segment",
                path: path.clone(),
                source,
            })?
            .len();
        if len < SEGMENT_HEADER_LEN as u64 {
            return Err(BlockError::Corrupt {
                path,
                offset: 0,
                reason: Corruption::TooShort { len },
            });
        }
        let map = map_file(&f, &path)?;
        let seg = Self { path, map };
        let mut d = Decbuf::new(&seg.map);
        let (magic, version) = (d.be_u32(), d.u8());
        if magic != Ok(SEGMENT_MAGIC) {
            // The length check above means both reads succeeded.
            let got = magic.unwrap_or_default();
            return Err(seg.corrupt(0, Corruption::BadMagic { got }));
        }
        if version != Ok(SEGMENT_FORMAT_VERSION) {
            return Err(BlockError::UnsupportedVersion {
                path: seg.path.clone(),
                version: version.map_or(0, u64::from),
            });
        }
        if seg.map[5..SEGMENT_HEADER_LEN] != [0, 0, 0] {
            return Err(seg.corrupt(5, Corruption::NonZeroPadding));
        }
        Ok(seg)
    }

    /// The mapped bytes.
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.map
    }

    pub(crate) fn corrupt(&self, offset: u64, reason: Corruption) -> BlockError {
        BlockError::Corrupt {
            path: self.path.clone(),
            offset,
            reason,
        }
    }

    /// Checks that a chunk of `data_len` bytes framed at `offset` lies
    /// inside the segment, without reading it.
    pub(crate) fn check_bounds(&self, offset: u32, data_len: u64) -> Result<(), BlockError> {
        if !chunk_in_bounds(self.map.len() as u64, offset, data_len) {
            return Err(self.corrupt(
                u64::from(offset),
                Corruption::OutOfBounds { part: Part::Chunk },
            ));
        }
        Ok(())
    }

    /// Parses and CRC-checks the framed chunk at `offset`, expecting
    /// `data_len` bytes of data; returns (encoding, data).
    pub(crate) fn chunk(&self, offset: u32, data_len: u64) -> Result<(u8, &[u8]), BlockError> {
        self.parse_chunk(offset, Some(data_len))
    }

    /// The encoding byte of the chunk framed at `offset`, read without
    /// checking the chunk (a cheap look: the data is checked when read).
    pub(crate) fn encoding_byte(&self, offset: u32) -> Option<u8> {
        frame_encoding_byte(self.map.get(offset as usize..)?)
    }

    /// [`Self::chunk`] taking the length from the frame alone: for a chunk
    /// that another one refers to (shared timestamps), whose index entry
    /// is not at hand.
    pub(crate) fn framed_chunk(&self, offset: u32) -> Result<(u8, &[u8]), BlockError> {
        self.parse_chunk(offset, None)
    }

    fn parse_chunk(&self, offset: u32, data_len: Option<u64>) -> Result<(u8, &[u8]), BlockError> {
        let at = u64::from(offset);
        let rest = (offset as usize >= SEGMENT_HEADER_LEN)
            .then(|| self.map.get(offset as usize..))
            .flatten()
            .ok_or_else(|| self.corrupt(at, Corruption::OutOfBounds { part: Part::Chunk }))?;
        parse_frame(rest, data_len).map_err(|reason| self.corrupt(at, reason))
    }
}

/// Whether a chunk of `data_len` bytes framed at `offset` lies inside a
/// segment of `size` bytes (after its header).
pub(crate) fn chunk_in_bounds(size: u64, offset: u32, data_len: u64) -> bool {
    let end = u64::from(offset).checked_add(frame_len(data_len));
    offset as usize >= SEGMENT_HEADER_LEN && end.is_some_and(|e| e <= size)
}

/// The encoding byte of the chunk framed at the start of `frame`, unchecked.
pub(crate) fn frame_encoding_byte(frame: &[u8]) -> Option<u8> {
    let mut d = Decbuf::new(frame);
    d.uvarint().ok()?;
    d.u8().ok()
}

/// Bytes the frame at the start of `frame` takes, from its length field
/// alone (`None` when that field does not parse).
pub(crate) fn framed_len(frame: &[u8]) -> Option<u64> {
    Decbuf::new(frame).uvarint().ok().map(frame_len)
}

/// Parses and CRC-checks the framed chunk at the start of `frame` (length,
/// encoding byte, data, CRC; bytes after it are ignored), expecting
/// `data_len` bytes of data when given; returns (encoding, data). The
/// one parser of chunk frames, for mapped segments and fetched ranges.
#[inline]
pub(crate) fn parse_frame(frame: &[u8], data_len: Option<u64>) -> Result<(u8, &[u8]), Corruption> {
    let part = Part::Chunk;
    let truncated = |source| Corruption::Truncated { part, source };
    let mut d = Decbuf::new(frame);
    let len = d.uvarint().map_err(truncated)?;
    if let Some(indexed) = data_len.filter(|&want| want != len) {
        return Err(Corruption::ChunkLengthMismatch {
            framed: len,
            indexed,
        });
    }
    let n = usize::try_from(len)
        .ok()
        .and_then(|n| n.checked_add(1))
        .ok_or(Corruption::CountOutOfRange { part, count: len })?;
    let framed = d.bytes(n).map_err(truncated)?;
    let stored = d.be_u32().map_err(truncated)?;
    let got = crc32fast::hash(framed);
    if stored != got {
        return Err(Corruption::ChecksumMismatch {
            part,
            stored,
            computed: got,
        });
    }
    Ok((framed[0], &framed[1..]))
}

/// Memory-maps a whole file read-only.
#[allow(unsafe_code)]
pub(crate) fn map_file(f: &File, path: &Path) -> Result<Mmap, BlockError> {
    // SAFETY: block files are written once (into a temporary directory that
    // is renamed into place after fsync) and never modified or truncated
    // while a `Block` is open; blocks are deleted only by renaming/removing
    // the directory after every `Arc<Block>` holder is gone (unlinked files
    // stay mapped). Modification by another process would be undefined
    // behaviour (SIGBUS on truncation), the same contract as Prometheus's
    // mmap'd blocks. Every read through the map is bounds-checked.
    unsafe { Mmap::map(f) }.map_err(|source| BlockError::Io {
        op: "mmap",
        path: path.to_path_buf(),
        source,
    })
}

/// Lists `chunks/` and maps every segment; `result[n - 1]` is segment `n`.
/// Segment numbers must be 1..=N without gaps.
pub(crate) fn open_segments(dir: &Path) -> Result<Vec<Arc<Segment>>, BlockError> {
    let io = |op: &'static str| {
        move |source| BlockError::Io {
            op,
            path: dir.to_path_buf(),
            source,
        }
    };
    let mut nums = Vec::new();
    for entry in fs::read_dir(dir).map_err(io("list chunks directory"))? {
        let entry = entry.map_err(io("list chunks directory"))?;
        let name = entry.file_name();
        let n = name
            .to_str()
            .filter(|s| s.len() == 6 && s.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|s| s.parse::<u32>().ok())
            .ok_or_else(|| BlockError::Corrupt {
                path: entry.path(),
                offset: 0,
                reason: Corruption::UnexpectedFile,
            })?;
        nums.push(n);
    }
    nums.sort_unstable();
    let mut out = Vec::with_capacity(nums.len());
    for (i, &n) in nums.iter().enumerate() {
        if n as usize != i + 1 {
            return Err(BlockError::Corrupt {
                path: dir.join(segment_name(i as u32 + 1)),
                offset: 0,
                reason: Corruption::MissingSegment {
                    segment: i as u32 + 1,
                },
            });
        }
        out.push(Arc::new(Segment::open(dir.join(segment_name(n)))?));
    }
    Ok(out)
}

/// One persisted chunk of a [`super::BlockSeries`]: its time range and a
/// handle on where its bytes are (the mapped segment, or the batch of
/// chunks fetched from a bucket together). Cloning is a reference-count
/// increment.
#[derive(Clone)]
pub struct BlockChunk {
    /// First sample's timestamp (inclusive).
    pub mint: i64,
    /// Last sample's timestamp (inclusive).
    pub maxt: i64,
    pub(crate) chunk_ref: ChunkRef,
    pub(crate) data_len: u64,
    pub(crate) source: ChunkSource,
}

/// Where a [`BlockChunk`]'s bytes are read from.
#[derive(Clone)]
pub(crate) enum ChunkSource {
    /// A memory-mapped local segment file.
    Mapped(Arc<Segment>),
    /// A batch of chunks read from object storage on first use
    /// ([`super::remote`]).
    Fetched(Arc<FetchBatch>),
}

impl BlockChunk {
    /// The chunk's encoding and bytes (`docs/format/chunks.md`,
    /// `docs/format/chunks-packed.md`), CRC-checked on each call. A chunk
    /// of a block in object storage is fetched (with the rest of its
    /// batch) on the first call.
    ///
    /// # Errors
    /// [`BlockError::Corrupt`] when the framing or the checksum does not
    /// match, [`BlockError::UnsupportedEncoding`] for an encoding byte this
    /// code does not know, [`BlockError::Fetch`] when the bucket read
    /// failed.
    pub fn data(&self) -> Result<(Encoding, &[u8]), BlockError> {
        let offset = self.chunk_ref.offset();
        let (byte, data) = match &self.source {
            ChunkSource::Mapped(segment) => segment.chunk(offset, self.data_len)?,
            ChunkSource::Fetched(batch) => batch.chunk(self.chunk_ref, Some(self.data_len))?,
        };
        let encoding =
            Encoding::from_byte(byte).ok_or_else(|| BlockError::UnsupportedEncoding {
                path: self.segment_path(),
                offset: u64::from(offset),
                encoding: byte,
            })?;
        Ok((encoding, data))
    }

    /// The segment file (or object) named in errors.
    fn segment_path(&self) -> PathBuf {
        match &self.source {
            ChunkSource::Mapped(segment) => segment.path.clone(),
            ChunkSource::Fetched(batch) => batch.segment_path(self.chunk_ref.segment()),
        }
    }

    /// The chunk's encoding, read without checking the chunk (cheap: one
    /// byte of the mapped segment, or of the fetched batch); `None` if it
    /// cannot be read or is unknown. [`Self::data`] checks it with the
    /// data.
    pub fn encoding(&self) -> Option<Encoding> {
        let byte = match &self.source {
            ChunkSource::Mapped(segment) => segment.encoding_byte(self.chunk_ref.offset()),
            ChunkSource::Fetched(batch) => batch.encoding_byte(self.chunk_ref),
        };
        byte.and_then(Encoding::from_byte)
    }

    /// The chunk's samples, decoded.
    ///
    /// # Errors
    /// As [`Self::data`], and [`BlockError::Corrupt`] when bytes that passed
    /// their checksum still do not decode.
    pub fn samples(&self) -> Result<Vec<Sample>, BlockError> {
        let (encoding, data) = self.data()?;
        self.decode(encoding, data)
    }

    /// Decodes this chunk's `data` as [`Self::data`] returned it, so a
    /// caller that already holds the checked bytes does not check them
    /// twice.
    ///
    /// # Errors
    /// As [`Self::samples`].
    pub fn decode(&self, encoding: Encoding, data: &[u8]) -> Result<Vec<Sample>, BlockError> {
        let decoded = match encoding {
            Encoding::Xor | Encoding::Histogram | Encoding::FloatHistogram => {
                chunk::decode(encoding, data)
            }
            // A chunk sharing another's timestamps names it by offset in
            // this segment; the owner's frame is checked like any chunk's.
            Encoding::Packed => chunk::decode_packed_with(data, |at| {
                let at = u32::try_from(at).ok()?;
                let owner = match &self.source {
                    ChunkSource::Mapped(segment) => segment.framed_chunk(at),
                    ChunkSource::Fetched(batch) => {
                        batch.chunk(ChunkRef::new(self.chunk_ref.segment(), at), None)
                    }
                };
                match owner {
                    Ok((byte, owner)) if Encoding::from_byte(byte) == Some(Encoding::Packed) => {
                        Some(owner)
                    }
                    _ => None,
                }
            }),
        };
        decoded.map_err(|e| BlockError::Corrupt {
            path: self.segment_path(),
            offset: u64::from(self.chunk_ref.offset()),
            reason: Corruption::ChunkUndecodable(e),
        })
    }

    /// Where the chunk is stored.
    pub fn chunk_ref(&self) -> ChunkRef {
        self.chunk_ref
    }

    /// Length of the chunk bytes (without framing).
    pub fn len(&self) -> usize {
        self.data_len as usize
    }

    /// Reports whether the chunk has no bytes (never, for a valid block).
    pub fn is_empty(&self) -> bool {
        self.data_len == 0
    }
}

impl fmt::Debug for BlockChunk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlockChunk")
            .field("mint", &self.mint)
            .field("maxt", &self.maxt)
            .field("ref", &self.chunk_ref.to_string())
            .field("len", &self.data_len)
            .finish()
    }
}
