//! The time-series database: write-ahead log, in-memory head, chunk codecs.
//!
//! Depends on [`crate::model`] only; must never import `api`, `promql` or
//! `ingest`. The public entry point is [`Db`]; everything else is exposed for
//! tests, benchmarks and tools. On-disk formats are documented in
//! `docs/format/`.

pub mod chunk;
pub mod encoding;
mod refs;
pub mod wal;

pub use refs::SeriesRef;
