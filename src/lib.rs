//! Tidemark: a Prometheus-compatible metrics backend.
//!
//! The crate is layered; arrows only point down:
//! `api -> promql -> storage -> model` and `api -> ingest -> storage`.
//! This file only declares the layers.

pub mod api;
pub mod config;
pub mod ingest;
pub mod model;
pub mod promql;
pub mod server;
pub mod storage;
