//! Load generation and side-by-side benchmarking (issue 7): node_exporter
//! shaped remote-write traffic ([`workload`], [`replay`]), encoded as
//! Prometheus sends it ([`encode`]), posted by K shards over keep-alive
//! HTTP ([`send`], [`http`]), and the comparison of Tidemark with
//! Prometheus and VictoriaMetrics ([`compare`]).
//!
//! This layer talks to servers over HTTP only: it may use `ingest::proto`
//! for the wire types and `model` for shared vocabulary, never `storage`,
//! `promql` or `api` internals.

mod catalog;
pub mod cli;
pub mod compare;
pub mod encode;
mod error;
pub mod http;
pub mod process;
pub mod replay;
mod rng;
pub mod send;
pub mod workload;

pub use error::{Error, Result};
