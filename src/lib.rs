//! Tidemark: a Prometheus-compatible metrics backend.
//!
//! The crate is layered; arrows only point down:
//! `api -> promql -> storage -> model` and `api -> ingest -> storage`.
//! The wire types come from the `tidemark-proto` crate; the load generator
//! and benchmark are the `tidemark-bench` crate, which talks to the server
//! over HTTP only.
//! This file only declares the layers.

pub mod api;
pub mod bucket;
pub mod compactor;
pub mod config;
pub mod ingest;
pub(crate) mod lru;
pub mod model;
pub mod promql;
pub mod query;
pub mod rules;
pub mod server;
pub mod shipper;
pub mod storage;
pub mod store;
pub mod web_config;
