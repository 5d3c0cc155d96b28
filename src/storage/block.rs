//! Persistent blocks: an immutable directory holding the series and chunks
//! of one time range, written once by [`BlockWriter`] and read through
//! memory maps by [`Block`].
//!
//! ```text
//! <block ulid>/
//!   meta.json         identity, [minTime, maxTime), stats, compaction lineage
//!   index             symbols, series (labels + chunk metas), postings, TOC
//!   chunks/000001 ... chunk segment files (framed XOR chunks)
//!   tombstones        deleted intervals per series (the only mutable file)
//! ```
//!
//! Owns the files inside a block directory. It must not decide when blocks
//! are cut, merged or deleted (compaction, retention) nor merge blocks with
//! the head (the querier), and it never applies tombstones to samples: it
//! stores and returns them. Formats: `docs/format/index.md`,
//! `docs/format/chunks-segment.md`, `docs/format/meta.md`,
//! `docs/format/tombstones.md`.

use std::path::PathBuf;

use crate::model::Labels;
use crate::storage::tombstones;
use crate::storage::BlockSeriesId;

mod chunks;
mod corruption;
mod elias_fano;
mod index;
mod index_writer;
mod meta;
mod reader;
mod remote;
mod stream;
mod writer;

pub(crate) use chunks::segment_name;
pub use chunks::{
    BlockChunk, ChunkRef, SEGMENT_FORMAT_VERSION, SEGMENT_HEADER_LEN, SEGMENT_MAGIC,
    SEGMENT_MAX_SIZE,
};
pub use corruption::{Corruption, IndexSection, Part};
pub use index::{check_index, IndexSummary, INDEX_FORMAT_V1, INDEX_FORMAT_VERSION, INDEX_MAGIC};
pub use meta::{
    new_ulid, BlockCompaction, BlockDesc, BlockMeta, BlockStats, TidemarkMeta, META_VERSION,
};
pub use reader::{Block, BlockIndex};
pub use remote::RemoteBlockFiles;
pub use writer::BlockWriter;

/// File name of the block metadata.
pub const META_FILE: &str = "meta.json";
/// File name of the block index.
pub const INDEX_FILE: &str = "index";
/// Directory of the chunk segment files.
pub const CHUNKS_DIR: &str = "chunks";
/// File name of the tombstones.
pub const TOMBSTONES_FILE: &str = "tombstones";

/// One series of a block with (some of) its chunks.
#[derive(Clone, Debug)]
pub struct BlockSeries {
    /// The series' id within this block: its position in label order, from
    /// 0. Stable for the life of the block; the key of its tombstones.
    pub id: BlockSeriesId,
    /// The series' labels.
    pub labels: Labels,
    /// Chunks in time order, non-overlapping.
    pub chunks: Vec<BlockChunk>,
}

/// A block operation failed.
#[derive(Debug, thiserror::Error)]
pub enum BlockError {
    /// A file-system operation failed.
    #[error("{op} {path}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A block file is damaged: bad magic, checksum mismatch, an offset or
    /// length out of bounds, a malformed entry.
    #[error("corrupt block file {path} at byte {offset}: {reason}")]
    Corrupt {
        /// The damaged file.
        path: PathBuf,
        /// Byte offset where the damage was noticed.
        offset: u64,
        /// What was wrong.
        reason: Corruption,
    },
    /// A file of a format version this code cannot read (written by a newer
    /// Tidemark).
    #[error("{path}: unsupported format version {version}")]
    UnsupportedVersion {
        /// The file.
        path: PathBuf,
        /// The version found.
        version: u64,
    },
    /// Reading a file of a block in object storage failed (the bucket
    /// did not answer, or answered something else than asked).
    #[error("reading {path} from object storage: {message}")]
    Fetch {
        /// The object (block key, file).
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// A chunk with an encoding byte this code cannot decode.
    #[error("{path}: chunk at byte {offset} has unsupported encoding {encoding}")]
    UnsupportedEncoding {
        /// The segment file.
        path: PathBuf,
        /// The chunk's offset.
        offset: u64,
        /// The encoding byte.
        encoding: u8,
    },
    /// [`BlockWriter::create`] was given a directory that exists.
    #[error("block directory {path} already exists")]
    DirExists {
        /// The directory.
        path: PathBuf,
    },
    /// Series were not added in strictly increasing label order.
    #[error(
        "series {got} added after {prev}: series must be added in strictly increasing label order"
    )]
    OutOfOrderSeries {
        /// The series added before.
        prev: Labels,
        /// The offending series.
        got: Labels,
    },
    /// A series' chunks overlap, are out of time order, or have `mint > maxt`.
    #[error("series {labels}: chunk {index} [{mint}, {maxt}] does not start after the previous chunk's maxt {prev_maxt:?}")]
    ChunksOutOfOrder {
        /// The series.
        labels: Labels,
        /// Index of the offending chunk.
        index: usize,
        /// Its mint.
        mint: i64,
        /// Its maxt.
        maxt: i64,
        /// The previous chunk's maxt.
        prev_maxt: Option<i64>,
    },
    /// A chunk given to the writer is not a readable XOR chunk.
    #[error("series {labels}: chunk {index} is invalid: {source}")]
    InvalidChunk {
        /// The series.
        labels: Labels,
        /// Index of the chunk.
        index: usize,
        /// The codec's complaint.
        #[source]
        source: crate::storage::chunk::Error,
    },
    /// Something exceeds a limit of the format.
    #[error("{what} of {size} exceeds the format's limit of {max}")]
    TooLarge {
        /// What is too large.
        what: &'static str,
        /// Its size or count.
        size: u64,
        /// The limit.
        max: u64,
    },
}

impl From<tombstones::Error> for BlockError {
    fn from(e: tombstones::Error) -> Self {
        match e {
            tombstones::Error::Io { op, path, source } => BlockError::Io { op, path, source },
            tombstones::Error::Corrupt {
                path,
                offset,
                reason,
            } => BlockError::Corrupt {
                path,
                offset,
                reason,
            },
        }
    }
}

#[cfg(test)]
mod tests;
