//! The time-series database: write-ahead log, in-memory head, chunk codecs.
//!
//! Depends on [`crate::model`] only; must never import `api`, `promql` or
//! `ingest`. The public entry point is [`Db`]; codecs are public for tests,
//! benchmarks and fuzzing. On-disk formats are documented in `docs/format/`.

pub mod block;
pub mod chunk;
mod compact;
mod db;
pub mod encoding;
mod error;
mod head;
mod options;
mod postings;
mod querier;
mod refs;
pub mod tombstones;
pub mod wal;

pub use compact::CrashHook;
pub use db::{
    CompactionReport, Db, OpenReport, StorageStats, LOCK_FILE, QUARANTINE_DIR, SNAPSHOTS_DIR,
    WAL_DIR,
};
pub use error::{Error, Result, SampleError};
pub use head::{
    AppendOutcome, HeadReplayStats, HeadStats, Rejected, ResolvedSeries, SampleKind, SeriesHandle,
    SeriesSamples,
};
pub use options::Options;
pub use querier::{Querier, Series, SeriesSampleIter};
pub use refs::SeriesRef;
