//! Generated protobuf types (prost, compiled by `build.rs` from `proto/`):
//! Prometheus remote write 1.0 and remote read, and remote write 2.0.
//!
//! Nothing here is written by hand. The server's `ingest` and remote read
//! and the bench tools share these types; wire rules (limits, validation)
//! belong to their users, not here.

#![allow(missing_docs, unreachable_pub, clippy::all)]

/// Remote write 1.0 and remote read (`package prometheus`).
pub mod prometheus {
    include!(concat!(env!("OUT_DIR"), "/prometheus.rs"));
}

/// Remote write 2.0 (`package io.prometheus.write.v2`).
pub mod write_v2 {
    include!(concat!(env!("OUT_DIR"), "/io.prometheus.write.v2.rs"));
}
