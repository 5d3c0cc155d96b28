//! `GET /metrics`: Tidemark's own metrics in the Prometheus text format.
//! Layers register their counters at construction; storage figures (active
//! series, WAL size) are read from the database at scrape time.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::api::AppState;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
}

/// Storage gauges, refreshed on every scrape.
#[derive(Debug, Default)]
pub(crate) struct StorageGauges {
    head_series: Gauge,
    wal_size_bytes: Gauge<u64, AtomicU64>,
}

impl StorageGauges {
    pub(crate) fn register(registry: &mut Registry) -> Self {
        let g = Self::default();
        registry.register(
            "tidemark_head_series",
            "Active series in the in-memory head.",
            g.head_series.clone(),
        );
        registry.register(
            "tidemark_wal_size_bytes",
            "Bytes of write-ahead log on disk (segments and checkpoint).",
            g.wal_size_bytes.clone(),
        );
        let build: Family<BuildLabels, Gauge> = Family::default();
        build
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION"),
            })
            .set(1);
        registry.register("tidemark_build_info", "Build information; always 1.", build);
        g
    }
}

pub(crate) async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    if let Some(db) = state.db().cloned() {
        let (series, wal) =
            tokio::task::spawn_blocking(move || (db.num_series(), db.wal_size_bytes()))
                .await
                .unwrap_or((0, 0));
        state.storage_gauges.head_series.set(series as i64);
        state.storage_gauges.wal_size_bytes.set(wal);
    }
    let mut body = String::new();
    if let Err(e) = encode(&mut body, &state.registry) {
        tracing::error!(error = %e, "encoding metrics");
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            "encoding metrics failed\n",
        )
            .into_response();
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
        .into_response()
}
