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

pub mod http;

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
    let server = tokio::spawn(http::serve(
        listener,
        api::router(state.clone()),
        http::HttpLimits::from(&config),
        stop_rx.clone(),
    ));

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

    let recovery = tokio::spawn(storage_recovery_loop(db.clone(), stop_rx.clone()));

    shutdown_signal().await;
    tracing::info!("shutting down");
    state.set_not_ready();
    let _ = stop_tx.send(true);
    if let Err(e) = compactor.await {
        tracing::error!(error = %e, "compaction task failed");
    }
    if let Err(e) = recovery.await {
        tracing::error!(error = %e, "storage recovery task failed");
    }
    if let Err(e) = server.await {
        tracing::error!(error = %e, "HTTP server task failed");
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

/// How often a store that cannot write tries again.
const STORAGE_RECOVERY_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// Watches whether storage takes writes; while it does not (a failed WAL
/// write or fsync: full or failing disk), tries every second to make it
/// writable again, so writes resume by themselves once space is back.
async fn storage_recovery_loop(db: Arc<Db>, mut stop: tokio::sync::watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(STORAGE_RECOVERY_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut was_writable = true;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        if db.is_writable() {
            was_writable = true;
            continue;
        }
        if was_writable {
            tracing::error!("storage cannot write (see the WAL error above); remote write answers 503 and queries go on; retrying every second");
            was_writable = false;
        }
        let db = db.clone();
        if let Ok(true) = tokio::task::spawn_blocking(move || db.recover_writes()).await {
            tracing::info!("storage writable again; remote write resumed");
            was_writable = true;
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
