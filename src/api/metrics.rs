//! `GET /metrics`: Tidemark's own metrics in the Prometheus text format.
//! Layers register their counters at construction; storage figures (active
//! series, WAL size) are read from the database at scrape time, process
//! figures (memory, CPU, file descriptors) from `/proc` at scrape time, and
//! HTTP requests (rate and latency by handler) are counted by a route
//! layer.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
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
    head_exemplars: Gauge,
    head_metadata_families: Gauge,
    head_metadata_bytes: Gauge,
    wal_size_bytes: Gauge<u64, AtomicU64>,
    blocks: Gauge,
    blocks_bytes: Gauge<u64, AtomicU64>,
    compactions: Family<CompactionLabels, Counter>,
    compaction_failures: Counter,
    retention_deleted_blocks: Counter,
    quarantined_blocks: Counter,
    blocks_awaiting_checks: Gauge,
    writable: Gauge,
    wal_recoveries: Counter,
    ooo_appended: Counter,
    compaction_duration: Histogram,
    /// Serialises refreshes, so concurrent scrapes never add a counter
    /// delta twice.
    refresh: parking_lot::Mutex<()>,
}

impl Default for StorageGauges {
    fn default() -> Self {
        Self {
            head_series: Gauge::default(),
            head_exemplars: Gauge::default(),
            head_metadata_families: Gauge::default(),
            head_metadata_bytes: Gauge::default(),
            wal_size_bytes: Gauge::default(),
            blocks: Gauge::default(),
            blocks_bytes: Gauge::default(),
            compactions: Family::default(),
            compaction_failures: Counter::default(),
            retention_deleted_blocks: Counter::default(),
            quarantined_blocks: Counter::default(),
            blocks_awaiting_checks: Gauge::default(),
            writable: Gauge::default(),
            wal_recoveries: Counter::default(),
            ooo_appended: Counter::default(),
            compaction_duration: Histogram::new([0.01, 0.05, 0.25, 1.0, 5.0, 25.0, 120.0, 600.0]),
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
            "tidemark_head_exemplars",
            "Exemplars held in the head's exemplar store.",
            g.head_exemplars.clone(),
        );
        registry.register(
            "tidemark_head_metadata_families",
            "Metric families whose metadata the head holds.",
            g.head_metadata_families.clone(),
        );
        registry.register(
            "tidemark_head_metadata_bytes",
            "Bytes of metadata text (names, help, unit) the head holds.",
            g.head_metadata_bytes.clone(),
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
            "tidemark_storage_quarantined_blocks",
            "Blocks that failed their checks (at start, or in the deferred check after it) and were moved to quarantine/; their data is not served.",
            g.quarantined_blocks.clone(),
        );
        registry.register(
            "tidemark_storage_blocks_awaiting_checks",
            "Blocks served since start whose full check (every series, postings list and chunk) has not run yet; it runs in the first compaction.",
            g.blocks_awaiting_checks.clone(),
        );
        registry.register(
            "tidemark_storage_writable",
            "1 while storage takes writes; 0 after a failed WAL write or fsync (full or failing disk) until it recovers by itself. Remote write answers 503 meanwhile.",
            g.writable.clone(),
        );
        registry.register(
            "tidemark_storage_wal_recoveries",
            "Times the WAL became writable again after a write or fsync failure.",
            g.wal_recoveries.clone(),
        );
        registry.register(
            "tidemark_head_out_of_order_samples_appended",
            "Float samples stored out of order, inside --storage.out-of-order-time-window (Prometheus's prometheus_tsdb_head_out_of_order_samples_appended_total). Refused ones are counted in tidemark_remote_write_samples_rejected_total{reason=\"out_of_order\"|\"too_old\"}.",
            g.ooo_appended.clone(),
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

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HandlerCodeLabels {
    handler: String,
    code: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HandlerLabel {
    handler: String,
}

fn http_latency_histogram() -> Histogram {
    // 1 ms .. ~150 s: covers a cached label lookup up to the 2 m default
    // query timeout.
    Histogram::new(exponential_buckets(0.001, 2.5, 14))
}

/// HTTP requests by route, as Prometheus's `prometheus_http_requests_total`
/// and `prometheus_http_request_duration_seconds` (`web/web.go`), so the
/// same dashboards' queries carry over.
#[derive(Debug)]
pub(crate) struct HttpMetrics {
    requests: Family<HandlerCodeLabels, Counter>,
    duration: Family<HandlerLabel, Histogram>,
}

impl HttpMetrics {
    pub(crate) fn register(registry: &mut Registry) -> Self {
        let m = Self {
            requests: Family::default(),
            duration: Family::new_with_constructor(http_latency_histogram),
        };
        registry.register(
            "tidemark_http_requests",
            "HTTP requests by handler (route) and status code.",
            m.requests.clone(),
        );
        registry.register(
            "tidemark_http_request_duration_seconds",
            "Time to answer an HTTP request, by handler (route).",
            m.duration.clone(),
        );
        m
    }

    fn observe(&self, handler: &str, code: u16, took: std::time::Duration) {
        self.requests
            .get_or_create(&HandlerCodeLabels {
                handler: handler.to_string(),
                code,
            })
            .inc();
        self.duration
            .get_or_create(&HandlerLabel {
                handler: handler.to_string(),
            })
            .observe(took.as_secs_f64());
    }
}

/// Route layer counting every routed request under its route pattern
/// (`/api/v1/label/{name}/values`, never the raw path, so the label set
/// stays bounded). Time is to the response head, as Prometheus measures.
pub(crate) async fn track_http(
    State(state): State<Arc<AppState>>,
    path: Option<MatchedPath>,
    req: Request,
    next: Next,
) -> Response {
    let start = Instant::now();
    let resp = next.run(req).await;
    let handler = path.as_ref().map_or("other", |p| p.as_str());
    state
        .http_metrics
        .observe(handler, resp.status().as_u16(), start.elapsed());
    resp
}

/// The standard `process_*` metrics of Prometheus client libraries
/// (resident and virtual memory, CPU seconds, open and max file
/// descriptors, start time), read from `/proc/self` at each scrape. Names
/// and units as client_golang's process collector, so existing dashboards
/// work. Elsewhere than Linux nothing is exposed.
#[derive(Debug)]
pub(crate) struct ProcessCollector;

/// Linux's `USER_HZ`: `/proc` reports CPU times in 1/100 s on every
/// architecture (procfs `proc_stat.go` assumes the same `userHZ = 100`).
const USER_HZ: f64 = 100.0;

/// Figures of this process, from `/proc`.
#[derive(Debug, Default, PartialEq)]
struct ProcessStats {
    resident_bytes: u64,
    virtual_bytes: u64,
    cpu_seconds: f64,
    start_time_seconds: f64,
    open_fds: u64,
    max_fds: u64,
}

/// `VmRSS`/`VmSize` (kB) from `/proc/self/status`, CPU and start ticks from
/// `/proc/self/stat` (fields 14, 15 and 22, counted after the `comm` field,
/// which may hold spaces), boot time from `/proc/stat`.
fn read_process_stats() -> Option<ProcessStats> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb = |key: &str| -> Option<u64> {
        let line = status.lines().find(|l| l.starts_with(key))?;
        line[key.len()..]
            .split_whitespace()
            .next()?
            .parse::<u64>()
            .ok()
    };
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let after_comm = &stat[stat.rfind(')')? + 1..];
    // after_comm starts at field 3 (state), so field n is index n - 3.
    let fields: Vec<&str> = after_comm.split_whitespace().collect();
    let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<u64>().ok());
    let boot = std::fs::read_to_string("/proc/stat")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse::<u64>().ok())?;
    let max_fds = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|l| {
            l.lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3))
                .and_then(|v| v.parse::<u64>().ok())
        })
        .unwrap_or(0);
    Some(ProcessStats {
        resident_bytes: kb("VmRSS:")? * 1024,
        virtual_bytes: kb("VmSize:")? * 1024,
        cpu_seconds: (field(14)? + field(15)?) as f64 / USER_HZ,
        start_time_seconds: boot as f64 + field(22)? as f64 / USER_HZ,
        open_fds: std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count() as u64),
        max_fds,
    })
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(p) = read_process_stats() else {
            return Ok(());
        };
        let gauges: [(&str, &str, f64); 5] = [
            (
                "process_resident_memory_bytes",
                "Resident memory size in bytes.",
                p.resident_bytes as f64,
            ),
            (
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes.",
                p.virtual_bytes as f64,
            ),
            (
                "process_start_time_seconds",
                "Start time of the process since unix epoch in seconds.",
                p.start_time_seconds,
            ),
            (
                "process_open_fds",
                "Number of open file descriptors.",
                p.open_fds as f64,
            ),
            (
                "process_max_fds",
                "Maximum number of open file descriptors.",
                p.max_fds as f64,
            ),
        ];
        for (name, help, v) in gauges {
            let g = ConstGauge::new(v);
            g.encode(encoder.encode_descriptor(name, help, None, g.metric_type())?)?;
        }
        // The text encoder appends `_total` to counters.
        let c = ConstCounter::new(p.cpu_seconds);
        c.encode(encoder.encode_descriptor(
            "process_cpu_seconds",
            "Total user and system CPU time spent in seconds.",
            None,
            c.metric_type(),
        )?)?;
        Ok(())
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
                (
                    db.exemplars().len(),
                    db.metadata().len(),
                    db.metadata().bytes(),
                ),
            )
        })
        .await;
        if let Ok((series, wal, st, durations, (exemplars, families, md_bytes))) = read {
            let g = &state.storage_gauges;
            let _refresh = g.refresh.lock();
            g.head_series.set(series as i64);
            g.head_exemplars.set(exemplars as i64);
            g.head_metadata_families.set(families as i64);
            g.head_metadata_bytes.set(md_bytes as i64);
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
            set_counter(&g.quarantined_blocks, st.quarantined_blocks);
            g.blocks_awaiting_checks
                .set(i64::try_from(st.blocks_awaiting_checks).unwrap_or(i64::MAX));
            set_counter(&g.wal_recoveries, st.wal_recoveries);
            set_counter(&g.ooo_appended, st.ooo_appended);
            g.writable.set(i64::from(st.writable));
            for d in durations {
                g.compaction_duration.observe(d);
            }
        }
    }
    exposition(&state.registry)
}

/// `registry` in the Prometheus text format, as a `/metrics` response
/// (also the compactor role's `/metrics`).
pub(crate) fn exposition(registry: &Registry) -> Response {
    let mut body = String::new();
    if let Err(e) = encode(&mut body, registry) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_stats_reads_this_process() {
        let stats = read_process_stats();
        if cfg!(not(target_os = "linux")) {
            return;
        }
        let p = stats.expect("/proc must be readable on Linux");
        assert!(p.resident_bytes > 1 << 20, "{p:?}");
        assert!(p.virtual_bytes >= p.resident_bytes, "{p:?}");
        assert!(p.open_fds > 0 && p.max_fds >= p.open_fds, "{p:?}");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        assert!(
            p.start_time_seconds <= now + 1.0 && p.start_time_seconds > now - 86_400.0 * 365.0,
            "{p:?}"
        );
    }

    #[test]
    fn process_collector_encodes_client_golang_names() {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(ProcessCollector));
        let mut out = String::new();
        encode(&mut out, &registry).unwrap();
        if cfg!(target_os = "linux") {
            for name in [
                "process_resident_memory_bytes ",
                "process_virtual_memory_bytes ",
                "process_cpu_seconds_total ",
                "process_open_fds ",
                "process_max_fds ",
                "process_start_time_seconds ",
            ] {
                assert!(out.contains(name), "{name} missing in:\n{out}");
            }
        }
    }
}
