//! The HTTP surface. For now: `/-/healthy` and `/-/ready`; the Prometheus
//! API, remote write and remote read land here next. Depends on `storage`
//! (and later `promql`, `ingest`); nothing below imports it.

mod health;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use axum::routing::get;
use axum::Router;

use crate::storage::Db;

/// State shared by all handlers.
#[derive(Default)]
pub struct AppState {
    db: OnceLock<Arc<Db>>,
    ready: AtomicBool,
}

impl AppState {
    /// State for a server whose storage is still opening.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Installs the opened database and marks the server ready.
    pub fn set_ready(&self, db: Arc<Db>) {
        let _ = self.db.set(db);
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
}

/// The router with every endpoint.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/-/healthy", get(health::healthy).head(health::healthy))
        .route("/-/ready", get(health::ready).head(health::ready))
        .with_state(state)
}
