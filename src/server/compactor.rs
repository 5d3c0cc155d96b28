//! `tidemark compact`: reads the bucket config, serves `/-/healthy`,
//! `/-/ready` and `/metrics` (the `tidemark_compact_*` metrics, registered
//! only here, and `process_*`) for Kubernetes probes and self-monitoring,
//! and runs the
//! compactor's passes ([`crate::compactor`]): one, or with `--wait` one
//! every `--wait-interval` until SIGTERM. Wiring only.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;

use crate::compactor::{CompactMetrics, Compactor, CompactorOptions};
use crate::config::CompactArgs;
use crate::shipper::objstore::BucketConfig;
use crate::storage::Options;

/// Least age of an abandoned upload's newest object before it is deleted,
/// whatever `--delete-delay` says: a shipper's upload in progress writes
/// objects minutes apart at most, so `--delete-delay=0s` must not delete it.
const MIN_PARTIAL_AGE: Duration = Duration::from_secs(3600);

struct WebState {
    registry: Registry,
    ready: AtomicBool,
}

async fn healthy() -> (StatusCode, &'static str) {
    (StatusCode::OK, "Tidemark compactor is Healthy.\n")
}

async fn ready(State(s): State<Arc<WebState>>) -> (StatusCode, &'static str) {
    if s.ready.load(Ordering::Acquire) {
        (StatusCode::OK, "Tidemark compactor is Ready.\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable\n")
    }
}

async fn metrics(State(s): State<Arc<WebState>>) -> Response {
    crate::api::exposition(&s.registry)
}

/// Runs `tidemark compact` until its one pass ends (without `--wait`) or
/// SIGTERM (with it).
///
/// # Errors
/// A bad bucket config, an unusable listen address, or (without `--wait`)
/// a pass that failed.
pub async fn run_compact(args: CompactArgs) -> anyhow::Result<()> {
    let path = &args.objstore_config_file;
    let context = || format!("--objstore.config.file={}", path.display());
    let bucket = BucketConfig::load(path).with_context(context)?;
    let store = bucket.build().with_context(context)?;
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("--data-dir={}", args.data_dir.display()))?;
    let mut registry = Registry::default();
    registry.register_collector(Box::new(crate::api::ProcessCollector));
    let m = CompactMetrics::register(&mut registry);
    let opts = CompactorOptions {
        store,
        prefix: bucket.prefix.clone(),
        part_size: bucket.part_size(),
        data_dir: args.data_dir.clone(),
        delete_delay: args.delete_delay,
        retention: args.retention_raw,
        consistency_delay: args.consistency_delay,
        block_range: Duration::from_millis(
            u64::try_from(Options::default().block_range_ms).unwrap_or(7_200_000),
        ),
        max_block_duration: args.max_block_duration,
        partial_age: args
            .delete_delay
            .max(args.consistency_delay)
            .max(MIN_PARTIAL_AGE),
        crash_hook: None,
    };
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding --web.listen-address={}", args.listen))?;
    tracing::info!(listen = %listener.local_addr()?, data_dir = %args.data_dir.display(),
        wait = args.wait, "starting tidemark compact");
    let web = Arc::new(WebState {
        registry,
        ready: AtomicBool::new(false),
    });
    let app = Router::new()
        .route("/-/healthy", get(healthy))
        .route("/-/ready", get(ready))
        .route("/metrics", get(metrics))
        .with_state(web.clone());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let server = tokio::spawn(super::http::serve(
        listener,
        app,
        super::http::HttpLimits::default(),
        Arc::default(),
        stop_rx.clone(),
    ));
    let wait = args
        .wait
        .then_some(args.wait_interval.max(Duration::from_millis(100)));
    let on_pass = {
        let web = web.clone();
        move |ok: bool| {
            if ok {
                web.ready.store(true, Ordering::Release);
            }
        }
    };
    let passes = tokio::spawn(crate::compactor::run(
        Compactor::new(opts, m),
        wait,
        on_pass,
        stop_rx,
    ));
    let ok = tokio::select! {
        r = passes => r.context("compaction task")?,
        () = super::shutdown_signal() => {
            tracing::info!("shutting down");
            let _ = stop_tx.send(true);
            true
        }
    };
    let _ = stop_tx.send(true);
    web.ready.store(false, Ordering::Release);
    if let Err(e) = server.await {
        tracing::error!(error = %e, "HTTP server task failed");
    }
    if !ok {
        anyhow::bail!("the compaction pass failed (see the errors above); the next run retries");
    }
    tracing::info!("stopped cleanly");
    Ok(())
}
