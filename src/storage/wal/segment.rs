//! Segment files: naming (`00000000`, `00000001`, ...), the 8-byte header,
//! record framing (`len | crc32 | payload`) and a streaming frame reader
//! (`docs/format/wal.md`, sections "Segments" and "Frames").
//!
//! Owns the byte layout of a segment; knows nothing about record payloads,
//! replay policy or group commit. Never deletes or truncates files (repair is
//! the reader's decision).

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Write};
use std::path::{Path, PathBuf};

use crate::storage::encoding::{put_be_u32, Decbuf};

use super::{io_err, RecordError, Result};

/// First 4 bytes of every segment file.
pub const SEGMENT_MAGIC: [u8; 4] = *b"TMWL";
/// Segment format version written (byte 4 of the header). Version 2 added
/// the tombstones record (type 3); version 3 the exemplars (4) and
/// metadata (6) records; version 4 the histogram samples records (7, 8);
/// version 5 the out-of-order samples records (9, 10, 11); version 6 the
/// snappy-compressed record (12); version 7 the chained samples record
/// (13); version 8 the run-chained samples record (14). Older segments hold
/// a subset of the record types and are still read. A
/// reader refuses other versions instead of repairing them.
pub const FORMAT_VERSION: u8 = 8;
/// Oldest segment format version this build reads.
pub const MIN_FORMAT_VERSION: u8 = 1;
/// Segment header: magic, version, 3 reserved zero bytes.
pub const SEGMENT_HEADER_LEN: u64 = 8;
/// Frame header: payload length `u32` BE, CRC-32 (IEEE) of the payload `u32` BE.
pub const FRAME_HEADER_LEN: u64 = 8;
/// Largest payload a frame may carry; a larger length field marks damage.
pub const MAX_RECORD_LEN: u32 = 256 << 20;
/// Default size at which a new segment is started.
pub const DEFAULT_SEGMENT_SIZE: u64 = 128 << 20;

/// Why a segment was judged damaged at some offset.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CorruptionReason {
    /// The file is shorter than the segment header.
    #[error("segment header cut short: {got} of {SEGMENT_HEADER_LEN} bytes")]
    ShortHeader {
        /// Bytes present.
        got: u64,
    },
    /// The file does not start with [`SEGMENT_MAGIC`].
    #[error("bad segment magic {got:02x?}")]
    BadMagic {
        /// The first four bytes.
        got: [u8; 4],
    },
    /// The file ends inside a frame header.
    #[error("frame header cut short: {got} of {FRAME_HEADER_LEN} bytes")]
    ShortFrameHeader {
        /// Bytes present.
        got: u64,
    },
    /// A frame's length field is zero (writers never emit empty payloads;
    /// zeros are what a filesystem leaves after a crash).
    #[error("zero record length")]
    ZeroLength,
    /// A frame's length field exceeds [`MAX_RECORD_LEN`].
    #[error("implausible record length {len}")]
    ImplausibleLength {
        /// The length field.
        len: u32,
    },
    /// The file ends inside a frame's payload.
    #[error("record of {len} bytes cut short: {got} bytes present")]
    ShortRecord {
        /// The length field.
        len: u32,
        /// Payload bytes present.
        got: u64,
    },
    /// The payload's CRC does not match the frame header.
    #[error("CRC mismatch: stored {expected:#010x}, computed {got:#010x}")]
    CrcMismatch {
        /// CRC in the frame header.
        expected: u32,
        /// CRC of the payload read.
        got: u32,
    },
    /// The CRC matched but the payload does not decode.
    #[error("undecodable record payload")]
    Undecodable(#[source] RecordError),
}

/// File name of segment `index`: 8 zero-padded decimal digits.
pub(crate) fn segment_name(index: u32) -> String {
    format!("{index:08}")
}

/// Parses a segment file name; `None` for anything else.
pub(crate) fn parse_segment_name(name: &str) -> Option<u32> {
    if name.len() == 8 && name.bytes().all(|b| b.is_ascii_digit()) {
        name.parse().ok()
    } else {
        None
    }
}

/// Segments in `dir`, sorted by index. A missing directory has none.
///
/// # Errors
/// [`super::Error::Io`] if the directory cannot be read.
pub(crate) fn list_segments(dir: &Path) -> Result<Vec<(u32, PathBuf)>> {
    list_numbered(dir, parse_segment_name)
}

/// Entries of `dir` whose name `index_of` maps to an index, sorted by it.
/// A missing directory has none.
///
/// # Errors
/// [`super::Error::Io`] if the directory cannot be read.
pub(crate) fn list_numbered(
    dir: &Path,
    index_of: impl Fn(&str) -> Option<u32>,
) -> Result<Vec<(u32, PathBuf)>> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err("read WAL directory", dir)(e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io_err("read WAL directory", dir))?;
        if let Some(index) = entry.file_name().to_str().and_then(&index_of) {
            out.push((index, entry.path()));
        }
    }
    out.sort_unstable_by_key(|(i, _)| *i);
    Ok(out)
}

/// The segment header bytes.
pub(crate) fn header() -> [u8; SEGMENT_HEADER_LEN as usize] {
    let mut h = [0u8; SEGMENT_HEADER_LEN as usize];
    h[..4].copy_from_slice(&SEGMENT_MAGIC);
    h[4] = FORMAT_VERSION;
    h
}

/// Appends one frame (`len | crc32 | payload`) to `buf`.
pub(crate) fn put_frame(buf: &mut Vec<u8>, payload: &[u8]) {
    let len = u32::try_from(payload.len()).expect("caller checked len <= MAX_RECORD_LEN");
    put_be_u32(buf, len);
    put_be_u32(buf, crc32fast::hash(payload));
    buf.extend_from_slice(payload);
}

/// Creates segment `index` in `dir` and writes its header. The caller
/// decides when to fsync the file and the directory.
///
/// # Errors
/// [`super::Error::Io`] if the file exists or cannot be written.
pub(crate) fn create_segment(dir: &Path, index: u32) -> Result<(File, PathBuf)> {
    let path = dir.join(segment_name(index));
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(io_err("create WAL segment", &path))?;
    file.write_all(&header())
        .map_err(io_err("write WAL segment header", &path))?;
    Ok((file, path))
}

/// fsyncs a directory so that file creations, renames and removals in it
/// are durable.
///
/// # Errors
/// [`super::Error::Io`] if it cannot be opened or synced.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("fsync WAL directory", dir))
}

/// One step of a [`SegmentReader`].
#[derive(Debug)]
pub(crate) enum Frame<'a> {
    /// An intact frame starting at `offset`.
    Record { offset: u64, payload: &'a [u8] },
    /// The segment ended cleanly at a frame boundary.
    End,
    /// The segment is damaged from `offset` on.
    Damaged {
        offset: u64,
        reason: CorruptionReason,
    },
}

/// Streams the frames of one segment file, checking lengths and CRCs.
pub(crate) struct SegmentReader {
    path: PathBuf,
    file: BufReader<File>,
    len: u64,
    offset: u64,
    payload: Vec<u8>,
}

impl SegmentReader {
    /// Opens `path`; call [`Self::read_header`] next.
    ///
    /// # Errors
    /// [`super::Error::Io`] if the file cannot be opened.
    pub(crate) fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).map_err(io_err("open WAL segment", path))?;
        let len = file
            .metadata()
            .map_err(io_err("stat WAL segment", path))?
            .len();
        Ok(Self {
            path: path.to_path_buf(),
            file: BufReader::with_capacity(crate::storage::FILE_BUFFER_SIZE, file),
            len,
            offset: 0,
            payload: Vec::new(),
        })
    }

    /// Checks the header; `Ok(Some(reason))` if it is damaged (offset 0).
    ///
    /// # Errors
    /// [`super::Error::UnsupportedVersion`] for a valid magic with another
    /// version; [`super::Error::Io`] on read failure.
    pub(crate) fn read_header(&mut self) -> Result<Option<CorruptionReason>> {
        if self.len < SEGMENT_HEADER_LEN {
            return Ok(Some(CorruptionReason::ShortHeader { got: self.len }));
        }
        let mut h = [0u8; SEGMENT_HEADER_LEN as usize];
        self.read_exact(&mut h)?;
        let mut d = Decbuf::new(&h);
        let magic = d.bytes(4).expect("header is 8 bytes");
        if magic != SEGMENT_MAGIC {
            let mut got = [0u8; 4];
            got.copy_from_slice(magic);
            return Ok(Some(CorruptionReason::BadMagic { got }));
        }
        let version = d.u8().expect("header is 8 bytes");
        if !(MIN_FORMAT_VERSION..=FORMAT_VERSION).contains(&version) {
            return Err(super::Error::UnsupportedVersion {
                file: self.path.clone(),
                version,
            });
        }
        self.offset = SEGMENT_HEADER_LEN;
        Ok(None)
    }

    /// Bytes of the file consumed so far (header and intact frames).
    pub(crate) fn offset(&self) -> u64 {
        self.offset
    }

    /// Reads the next frame. Lengths are checked against the file size
    /// before reading, so a garbage length never allocates.
    ///
    /// # Errors
    /// [`super::Error::Io`] on read failure (damage is a [`Frame::Damaged`]).
    pub(crate) fn next_frame(&mut self) -> Result<Frame<'_>> {
        let start = self.offset;
        let left = self.len - start;
        if left == 0 {
            return Ok(Frame::End);
        }
        let damaged = |reason| {
            Ok(Frame::Damaged {
                offset: start,
                reason,
            })
        };
        if left < FRAME_HEADER_LEN {
            return damaged(CorruptionReason::ShortFrameHeader { got: left });
        }
        let mut h = [0u8; FRAME_HEADER_LEN as usize];
        self.read_exact(&mut h)?;
        let mut d = Decbuf::new(&h);
        let len = d.be_u32().expect("frame header is 8 bytes");
        let expected = d.be_u32().expect("frame header is 8 bytes");
        if len == 0 {
            return damaged(CorruptionReason::ZeroLength);
        }
        if len > MAX_RECORD_LEN {
            return damaged(CorruptionReason::ImplausibleLength { len });
        }
        let got = left - FRAME_HEADER_LEN;
        if u64::from(len) > got {
            return damaged(CorruptionReason::ShortRecord { len, got });
        }
        let mut payload = std::mem::take(&mut self.payload);
        payload.resize(len as usize, 0);
        let read = self.read_exact(&mut payload);
        self.payload = payload;
        read?;
        let crc = crc32fast::hash(&self.payload);
        if crc != expected {
            return damaged(CorruptionReason::CrcMismatch { expected, got: crc });
        }
        self.offset = start + FRAME_HEADER_LEN + u64::from(len);
        Ok(Frame::Record {
            offset: start,
            payload: &self.payload,
        })
    }

    fn read_exact(&mut self, buf: &mut [u8]) -> Result<()> {
        self.file
            .read_exact(buf)
            .map_err(io_err("read WAL segment", &self.path))
    }
}
