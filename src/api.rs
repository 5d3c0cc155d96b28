//! The HTTP surface. For now: `/-/healthy` and `/-/ready`; the Prometheus
//! API, remote write and remote read land here next. Depends on `storage`
//! (and later `promql`, `ingest`); nothing below imports it.

mod error;
mod health;
mod metrics;
mod read;
mod write;

pub use error::ApiError;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;

use prometheus_client::registry::Registry;

use crate::ingest::{IngestMetrics, Receiver};
use crate::storage::Db;

/// State shared by all handlers.
pub struct AppState {
    db: OnceLock<Arc<Db>>,
    receiver: OnceLock<Arc<Receiver>>,
    ready: AtomicBool,
    registry: Registry,
    ingest_metrics: Arc<IngestMetrics>,
    storage_gauges: metrics::StorageGauges,
}

impl AppState {
    /// State for a server whose storage is still opening, with every
    /// layer's metrics registered.
    pub fn new() -> Arc<Self> {
        let mut registry = Registry::default();
        let ingest_metrics = Arc::new(IngestMetrics::register(&mut registry));
        let storage_gauges = metrics::StorageGauges::register(&mut registry);
        Arc::new(Self {
            db: OnceLock::new(),
            receiver: OnceLock::new(),
            ready: AtomicBool::new(false),
            registry,
            ingest_metrics,
            storage_gauges,
        })
    }

    /// The remote-write metrics, to hand to [`Receiver::with_metrics`].
    pub fn ingest_metrics(&self) -> Arc<IngestMetrics> {
        self.ingest_metrics.clone()
    }

    /// Installs the opened database and the receiver writing into it, and
    /// marks the server ready.
    pub fn set_ready(&self, db: Arc<Db>, receiver: Arc<Receiver>) {
        let _ = self.db.set(db);
        let _ = self.receiver.set(receiver);
        self.ready.store(true, Ordering::Release);
    }

    /// Marks the server not ready (shutting down).
    pub fn set_not_ready(&self) {
        self.ready.store(false, Ordering::Release);
    }

    /// Whether WAL replay has finished and the server takes traffic.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// The database, once open.
    pub fn db(&self) -> Option<&Arc<Db>> {
        self.db.get()
    }

    /// The remote-write receiver, once storage is open.
    pub fn receiver(&self) -> Option<&Arc<Receiver>> {
        self.receiver.get()
    }
}

/// The router with every endpoint.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/-/healthy", get(health::healthy).head(health::healthy))
        .route("/-/ready", get(health::ready).head(health::ready))
        .route("/metrics", get(metrics::metrics))
        .route("/api/v1/read", post(read::read))
        // The receiver enforces its own (configurable) body limit.
        .route(
            "/api/v1/write",
            post(write::write).layer(DefaultBodyLimit::disable()),
        )
        .with_state(state)
}
