//! Wires storage and the HTTP router together and runs them: binds the
//! listener first (so `/-/healthy` answers during WAL replay), opens the
//! database on a blocking thread, flips `/-/ready`, and on SIGTERM or SIGINT
//! stops intake, drains HTTP, then closes the database (final WAL fsync).

use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;

use crate::api::{self, ApiOptions, AppState};
use crate::config::Config;
use crate::ingest::{Receiver, ReceiverOptions};
use crate::storage::{Db, Options};

/// Runs the server until a termination signal.
///
/// # Errors
/// When the listener cannot bind or the database cannot open.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    tracing::info!(listen = %listener.local_addr()?, data_dir = %config.data_dir.display(), "starting tidemark");
    let state = AppState::with_options(ApiOptions::from(&config));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let server = {
        let mut stop_rx = stop_rx.clone();
        let app = api::router(state.clone());
        tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stop_rx.wait_for(|s| *s).await;
                })
                .await
        })
    };

    let opts = Options::from(&config);
    let dir = config.data_dir.clone();
    let open = tokio::task::spawn_blocking(move || Db::open(dir, opts));
    let db = tokio::select! {
        res = open => Arc::new(res.context("storage open task")?.context("opening storage")?),
        _ = shutdown_signal() => {
            tracing::info!("signal during startup; exiting");
            let _ = stop_tx.send(true);
            return Ok(());
        }
    };
    let r = db.open_report();
    tracing::info!(
        series = r.head.series,
        samples = r.head.samples,
        segments = r.wal.segments,
        duration_ms = r.replay_duration.as_millis() as u64,
        "WAL replay finished; ready"
    );
    let receiver = Arc::new(Receiver::with_metrics(
        db.clone(),
        ReceiverOptions::from(&config),
        state.ingest_metrics(),
    ));
    state.set_ready(db.clone(), receiver);
    let compactor = tokio::spawn(compaction_loop(
        db.clone(),
        config.compaction_interval,
        stop_rx.clone(),
    ));

    shutdown_signal().await;
    tracing::info!("shutting down");
    state.set_not_ready();
    let _ = stop_tx.send(true);
    if let Err(e) = compactor.await {
        tracing::error!(error = %e, "compaction task failed");
    }
    match server.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::error!(error = %e, "HTTP server error"),
        Err(e) => tracing::error!(error = %e, "HTTP server task failed"),
    }
    tokio::task::spawn_blocking(move || db.close())
        .await
        .context("storage close task")?
        .context("closing storage")?;
    tracing::info!("stopped cleanly");
    Ok(())
}

/// Runs [`Db::compact`] at start and then every `interval` until `stop`.
/// A failed run is logged and retried at the next tick.
async fn compaction_loop(
    db: Arc<Db>,
    interval: std::time::Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(interval.max(std::time::Duration::from_millis(100)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let db = db.clone();
        match tokio::task::spawn_blocking(move || db.compact()).await {
            Ok(Ok(r)) if r != Default::default() => tracing::info!(
                head_blocks = r.head_blocks,
                merges = r.merges,
                rewrites = r.rewrites,
                retention_deleted = r.retention_deleted,
                "compaction finished"
            ),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "compaction failed; retrying next interval"),
            Err(e) => tracing::error!(error = %e, "compaction task failed"),
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
