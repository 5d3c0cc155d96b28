//! The storage layer's error types: [`Error`] for whole operations and
//! [`SampleError`] for one rejected sample inside an otherwise good batch.

use std::path::PathBuf;

use crate::storage::{block, wal};

/// A failed storage operation. Nothing in the batch was acknowledged.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The write-ahead log failed (I/O, disk full, earlier fsync failure).
    #[error("write-ahead log: {0}")]
    Wal(#[from] wal::Error),
    /// Another process holds the data directory.
    #[error("data directory {dir} is locked by another process")]
    Locked {
        /// The data directory.
        dir: PathBuf,
    },
    /// A file-system operation on the data directory failed.
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
    /// Reading or writing a persistent block failed.
    #[error("block: {0}")]
    Block(#[from] block::BlockError),
    /// The database was closed; no further writes are taken.
    #[error("storage is closed")]
    Closed,
    /// A chunk failed to decode while being rewritten.
    #[error("chunk decode: {0}")]
    ChunkDecode(#[from] crate::storage::chunk::Error),
}

/// Result alias of the storage layer.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why one sample of a batch was not stored. The rest of the batch is.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SampleError {
    /// Older than the newest sample of its series.
    #[error("out of order sample: timestamp {t} is before the series' latest {last_t}")]
    OutOfOrder {
        /// The rejected timestamp.
        t: i64,
        /// The series' newest timestamp.
        last_t: i64,
    },
    /// Same timestamp as the newest sample, different value.
    #[error("duplicate sample for timestamp {t} with a different value")]
    DuplicateSample {
        /// The timestamp.
        t: i64,
    },
    /// Older than the head accepts (the head's max time minus half a block range).
    #[error("sample timestamp {t} is too old: the head accepts {min_valid_t} and later")]
    TooOld {
        /// The rejected timestamp.
        t: i64,
        /// The oldest accepted timestamp when checked.
        min_valid_t: i64,
    },
    /// Creating the series would exceed the per-metric series limit.
    #[error("metric {metric:?} already has the maximum of {limit} series")]
    SeriesLimit {
        /// The metric name.
        metric: String,
        /// The configured limit.
        limit: usize,
    },
    /// A native histogram breaking Prometheus's structural rules.
    #[error("invalid native histogram: {0}")]
    InvalidHistogram(crate::model::HistogramError),
}

impl SampleError {
    /// A short stable name for counting rejections by reason.
    pub fn reason(&self) -> &'static str {
        match self {
            SampleError::OutOfOrder { .. } => "out_of_order",
            SampleError::DuplicateSample { .. } => "duplicate_timestamp",
            SampleError::TooOld { .. } => "too_old",
            SampleError::SeriesLimit { .. } => "series_limit",
            SampleError::InvalidHistogram(_) => "invalid_histogram",
        }
    }
}
