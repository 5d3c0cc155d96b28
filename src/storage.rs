//! The time-series database: write-ahead log, in-memory head, chunk codecs.
//!
//! Depends on [`crate::model`] only; must never import `api`, `promql` or
//! `ingest`. The public entry point is [`Db`]; codecs are public for tests,
//! benchmarks and fuzzing. On-disk formats are documented in `docs/format/`.

/// Buffer size of the buffered readers and writers of storage files: WAL
/// segments (replay), checkpoints, block chunk segments, the block index
/// and its scratch file. Large enough that a sequential pass makes few
/// system calls, small enough to hold one per open file.
pub(crate) const FILE_BUFFER_SIZE: usize = 1 << 20;

/// Initial capacity of the head snapshot's encode buffer.
pub(crate) const SNAPSHOT_BUFFER_SIZE: usize = 1 << 20;

pub mod block;
pub mod chunk;
mod compact;
mod db;
pub mod encoding;
mod error;
mod file_frame;
mod head;
mod options;
mod plan;
mod postings;
mod prefetch;
mod querier;
mod refs;
mod shipping;
pub mod tombstones;
pub mod wal;

pub use compact::{merge_blocks, plan_merge, CrashHook};
pub use db::{
    CompactionReport, Db, OpenReport, ReloadReport, StorageStats, LOCK_FILE, QUARANTINE_DIR,
    SNAPSHOTS_DIR, WAL_DIR,
};
pub use error::{Error, Result, SampleError};
pub use head::{
    check_head_snapshot, metric_type_code, metric_type_name, AppendExtras, AppendOutcome,
    ExemplarDrop, ExemplarEntry, ExemplarStore, ExtrasOutcome, HeadReplayStats, HeadStats,
    MetadataDrop, MetadataLimits, MetadataStore, MetricMetadata, Rejected, ResolvedSeries,
    SampleKind, SeriesHandle, SeriesSamples, METRIC_TYPES,
};
pub use options::Options;
pub use querier::{Querier, Series, SeriesSampleIter};
pub use refs::{BlockSeriesId, SeriesRef};
pub use shipping::ShipGate;
