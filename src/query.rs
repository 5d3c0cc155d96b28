//! The query role (`tidemark query`): one Prometheus-compatible HTTP API
//! over many Tidemark nodes and stores. The PromQL engine and the API
//! handlers are the node's own; they read through [`Fanout`], a
//! [`crate::promql::Source`] that pushes selectors and time ranges down to
//! every endpoint that may hold matching data (remote read, streamed XOR
//! chunks), merges the answers and de-duplicates HA replicas.
//!
//! `endpoint`: `--endpoint` forms and DNS; `client`: the HTTP calls and
//! their bounds; `dedup`: merging and replica de-duplication; `fanout`:
//! the source; `metrics`: `tidemark_query_endpoint_*`.
//! Depends on `promql`, `model`, `storage` (chunk decoding) and `ingest`
//! (wire types); nothing but `api` and `server` imports it.

mod client;
mod dedup;
mod endpoint;
mod fanout;
mod metrics;

pub use client::{CallError, EndpointInfo, EndpointTls};
pub use endpoint::{EndpointError, EndpointSpec};
pub use fanout::{Fanout, FanoutOptions};
pub use metrics::QueryMetrics;
