//! Remote write: decode 1.0 and 2.0 requests, validate them and turn them
//! into a storage batch under per-request limits, with the metadata and
//! exemplars they carry (which storage keeps, durably).
//! Depends on `model` and `storage`; never on `api`.

pub mod decode;
mod error;
pub mod histogram;
pub mod limits;
mod metrics;
pub mod otlp;
pub mod proto;
mod receiver;
pub mod series_cache;
pub mod validate;
pub mod wire;

pub use decode::{ProtoVersion, Request};
pub use error::{Error, Reason};
pub use limits::{Limit, ReadLimits, WriteLimits};
pub use metrics::IngestMetrics;
pub use receiver::{PendingWrite, Receiver, ReceiverOptions, WriteOutcome};
pub use series_cache::SeriesCache;
