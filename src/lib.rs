//! Tidemark: a Prometheus-compatible metrics backend.
//!
//! The crate is layered; arrows only point down:
//! `api -> promql -> storage -> model` and `api -> ingest -> storage`;
//! `loadgen` (the load generator and benchmark) talks HTTP and uses only
//! `ingest::proto`.
//! This file only declares the layers.

pub mod api;
pub mod config;
pub mod ingest;
pub mod loadgen;
pub mod model;
pub mod promql;
pub mod server;
pub mod storage;
pub mod web_config;
