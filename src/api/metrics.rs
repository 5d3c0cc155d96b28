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
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::api::AppState;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CompactionLabels {
    kind: &'static str,
}

/// Storage gauges and counters, refreshed from the database on every scrape.
#[derive(Debug)]
pub(crate) struct StorageGauges {
    head_series: Gauge,
    wal_size_bytes: Gauge<u64, AtomicU64>,
    blocks: Gauge,
    blocks_bytes: Gauge<u64, AtomicU64>,
    compactions: Family<CompactionLabels, Counter>,
    compaction_failures: Counter,
    retention_deleted_blocks: Counter,
    compaction_duration: Histogram,
    /// Serialises refreshes, so concurrent scrapes never add a counter
    /// delta twice.
    refresh: parking_lot::Mutex<()>,
}

impl Default for StorageGauges {
    fn default() -> Self {
        Self {
            head_series: Gauge::default(),
            wal_size_bytes: Gauge::default(),
            blocks: Gauge::default(),
            blocks_bytes: Gauge::default(),
            compactions: Family::default(),
            compaction_failures: Counter::default(),
            retention_deleted_blocks: Counter::default(),
            compaction_duration: Histogram::new(
                [0.01, 0.05, 0.25, 1.0, 5.0, 25.0, 120.0, 600.0].into_iter(),
            ),
            refresh: parking_lot::Mutex::new(()),
        }
    }
}

/// Raises a counter to an absolute total kept by the storage layer.
fn set_counter(c: &Counter, total: u64) {
    let now = c.get();
    if total > now {
        c.inc_by(total - now);
    }
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
        registry.register(
            "tidemark_storage_blocks",
            "Persisted blocks on disk.",
            g.blocks.clone(),
        );
        registry.register(
            "tidemark_storage_blocks_bytes",
            "Bytes of persisted blocks on disk.",
            g.blocks_bytes.clone(),
        );
        registry.register(
            "tidemark_storage_compactions",
            "Compactions done: kind=head (head to block) or merge (block merges and tombstone rewrites).",
            g.compactions.clone(),
        );
        registry.register(
            "tidemark_storage_compaction_failures",
            "Compaction runs that failed.",
            g.compaction_failures.clone(),
        );
        registry.register(
            "tidemark_storage_retention_deleted_blocks",
            "Blocks deleted by time or size retention.",
            g.retention_deleted_blocks.clone(),
        );
        registry.register(
            "tidemark_storage_compaction_duration_seconds",
            "Duration of one compaction step (one block written).",
            g.compaction_duration.clone(),
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
        let read = tokio::task::spawn_blocking(move || {
            (
                db.num_series(),
                db.wal_size_bytes(),
                db.storage_stats(),
                db.take_compaction_durations(),
            )
        })
        .await;
        if let Ok((series, wal, st, durations)) = read {
            let g = &state.storage_gauges;
            let _refresh = g.refresh.lock();
            g.head_series.set(series as i64);
            g.wal_size_bytes.set(wal);
            g.blocks.set(st.blocks as i64);
            g.blocks_bytes.set(st.blocks_bytes);
            let kind = |kind| {
                g.compactions
                    .get_or_create(&CompactionLabels { kind })
                    .clone()
            };
            set_counter(&kind("head"), st.head_compactions);
            set_counter(&kind("merge"), st.merge_compactions);
            set_counter(&g.compaction_failures, st.compaction_failures);
            set_counter(&g.retention_deleted_blocks, st.retention_deleted_blocks);
            for d in durations {
                g.compaction_duration.observe(d);
            }
        }
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
