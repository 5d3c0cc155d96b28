//! The segmented write-ahead log: every accepted batch is framed, CRC-checked
//! and written here before it is acknowledged, and replayed on restart.
//!
//! Owns the `<data>/wal/` directory (segment files and `checkpoint.NNNNNNNN/`
//! directories) and nothing else; it must not touch the head, blocks or any
//! file outside that directory. Byte layouts: `docs/format/wal.md` and
//! `docs/format/checkpoint.md`.
//!
//! - `record`: payload codecs ([`encode_series`], [`encode_samples`],
//!   [`encode_exemplars`], [`encode_metadata`], [`decode`]).
//! - `segment`: file naming, segment header, record framing, frame reader.
//! - [`replay`]: newest checkpoint + later segments; torn/corrupt tail repair.
//! - [`Wal`]: the writer, with group commit.
//! - [`checkpoint()`]: compacts closed segments into a checkpoint.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

mod checkpoint;
mod histogram_record;
mod reader;
mod record;
mod segment;
mod writer;

#[cfg(test)]
mod tests;

pub use checkpoint::{checkpoint, CheckpointStats, Held, KeepSince};
pub use histogram_record::{
    encode_histogram_samples, encode_ooo_histogram_samples, RefHistogramSample,
    RECORD_FLOAT_HISTOGRAM_SAMPLES, RECORD_HISTOGRAM_SAMPLES, RECORD_OOO_FLOAT_HISTOGRAM_SAMPLES,
    RECORD_OOO_HISTOGRAM_SAMPLES,
};
pub use reader::{replay, replay_after, Damage, ReplayStats};
pub use record::{
    compress_record, decode, decode_chained, decode_chained_if, encode_exemplars, encode_linked,
    encode_metadata, encode_ooo_samples, encode_samples, encode_series, encode_tombstones,
    next_segment_tag, ChainLink, Record, RecordError, RefExemplar, RefMetadata, RefSample,
    RefSeries, RefTombstone, SampleChain, SeriesSamples, RECORD_CHAINED_SAMPLES, RECORD_EXEMPLARS,
    RECORD_METADATA, RECORD_OOO_SAMPLES, RECORD_RUN_SAMPLES, RECORD_SAMPLES, RECORD_SERIES,
    RECORD_SNAPPY, RECORD_TOMBSTONES,
};
pub use segment::{
    CorruptionReason, DEFAULT_SEGMENT_SIZE, FORMAT_VERSION, FRAME_HEADER_LEN, MAX_RECORD_LEN,
    MIN_FORMAT_VERSION, SEGMENT_HEADER_LEN, SEGMENT_MAGIC,
};
pub use writer::{Durable, FsyncPolicy, Payload, Ticket, Wal, WalOptions};

/// Result of WAL operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A WAL failure. Damage found during [`replay`] is repaired and reported in
/// [`ReplayStats`], not returned; these are the failures that are not.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A record that must be intact is not: damage inside a checkpoint (which
    /// is written atomically, so it is never a torn tail), or in a segment
    /// being compacted by [`checkpoint()`].
    #[error("corrupt WAL file {} at offset {offset}: {reason}", file.display())]
    Corruption {
        /// The damaged file.
        file: PathBuf,
        /// Byte offset of the damaged record (or 0 for the header).
        offset: u64,
        /// What was wrong.
        #[source]
        reason: CorruptionReason,
    },
    /// A segment was written by a newer (or unknown) format version; nothing
    /// is repaired, since the data may be fine for a newer build.
    #[error(
        "WAL file {} has format version {version}, this build reads versions 1 to {FORMAT_VERSION}",
        file.display()
    )]
    UnsupportedVersion {
        /// The segment file.
        file: PathBuf,
        /// The version byte found.
        version: u8,
    },
    /// Segment numbers are not consecutive: a file was removed by something
    /// other than the WAL. Replaying past the gap would apply samples whose
    /// series records are lost, so replay refuses.
    #[error("WAL segment {missing:08} is missing in {} (segments must be consecutive)", dir.display())]
    SegmentGap {
        /// The WAL (or checkpoint) directory.
        dir: PathBuf,
        /// The first missing segment index.
        missing: u32,
    },
    /// An I/O call failed.
    #[error("{op} {}", path.display())]
    Io {
        /// What was being done, e.g. "create WAL segment".
        op: &'static str,
        /// The file or directory involved.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// An earlier write or fsync failed, so the WAL can no longer promise
    /// durability; every later call fails with this (sticky) error.
    #[error("WAL unusable after failed {op} of {}", path.display())]
    Poisoned {
        /// What failed first.
        op: &'static str,
        /// The file involved.
        path: PathBuf,
        /// The original OS error.
        #[source]
        source: Arc<io::Error>,
    },
    /// A record payload is larger than [`MAX_RECORD_LEN`].
    #[error("WAL record of {len} bytes exceeds the maximum of {MAX_RECORD_LEN} bytes")]
    RecordTooLarge {
        /// The payload length.
        len: usize,
    },
    /// A record payload is empty (a zero length marks a damaged frame).
    #[error("empty WAL record payload")]
    EmptyRecord,
    /// The WAL was closed.
    #[error("WAL is closed")]
    Closed,
    /// [`checkpoint()`] was asked to compact a segment still being written.
    #[error("cannot checkpoint through segment {last:08}: segment {current:08} is the open one")]
    CheckpointOpenSegment {
        /// The requested last segment.
        last: u32,
        /// The segment currently written.
        current: u32,
    },
}

/// Builds an [`Error::Io`] mapper: `.map_err(io_err("open WAL segment", &path))`.
pub(crate) fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> Error + 'a {
    move |source| Error::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}
