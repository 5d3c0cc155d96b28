//! Wires storage and the HTTP router together and runs them: binds the
//! listener first (so `/-/healthy` answers during WAL replay), opens the
//! database on a blocking thread, flips `/-/ready`, and on SIGTERM or SIGINT
//! stops intake, drains HTTP, then closes the database (final WAL fsync).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;

use crate::api::{self, ApiOptions, AppState};
use crate::config::Config;
use crate::ingest::{Receiver, ReceiverOptions};
use crate::rules::group::AlertTimings;
use crate::rules::{load_groups, RuleManager, RulesOptions};
use crate::shipper::objstore::BucketConfig;
use crate::shipper::{Shipper, ShipperOptions};
use crate::storage::{Db, Options};
use crate::web_config::WebConfig;

pub use compactor::run_compact;

mod compactor;
pub mod http;
mod query_role;
pub mod tls;

pub use query_role::run_query;

/// How often `--web.config.file` (and the certificate files it names) is
/// checked for changes, besides SIGHUP.
const WEB_CONFIG_POLL: std::time::Duration = std::time::Duration::from_secs(2);

/// What `--web.config.file` configures, ready for use.
struct LoadedWebConfig {
    web: WebConfig,
    tls: Option<tokio_rustls::TlsAcceptor>,
}

/// Reads and validates the web config and builds its TLS configuration.
fn load_web_config(path: &Path) -> anyhow::Result<LoadedWebConfig> {
    let web = WebConfig::load(path)?;
    let tls = match &web.tls {
        Some(t) => Some(tokio_rustls::TlsAcceptor::from(tls::server_config(t)?)),
        None => None,
    };
    Ok(LoadedWebConfig { web, tls })
}

/// What a change of the web config is detected by: the file's bytes and
/// the modification times and sizes of the certificate files it names.
fn web_config_fingerprint(path: &Path) -> Vec<u8> {
    let mut out = std::fs::read(path).unwrap_or_default();
    if let Ok(web) = WebConfig::load(path) {
        if let Some(t) = web.tls {
            for f in [t.cert_file, t.key_file, t.client_ca_file] {
                if let Ok(m) = std::fs::metadata(&f) {
                    out.extend(format!("{f}:{:?}:{}", m.modified().ok(), m.len()).bytes());
                }
            }
        }
    }
    out
}

/// Re-reads the web config on SIGHUP and when it changes (polled every
/// [`WEB_CONFIG_POLL`]); a good file replaces users, headers and TLS for
/// requests and connections from then on (open connections stay), a
/// broken one is logged and the previous configuration stays.
async fn web_config_reload_loop(
    path: PathBuf,
    state: Arc<AppState>,
    tls: http::TlsSlot,
    mut hup: tokio::signal::unix::Signal,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(WEB_CONFIG_POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut seen = web_config_fingerprint(&path);
    loop {
        let forced = tokio::select! {
            _ = hup.recv() => true,
            _ = tick.tick() => false,
            _ = stop.wait_for(|s| *s) => return,
        };
        let p = path.clone();
        let Ok(now) = tokio::task::spawn_blocking(move || web_config_fingerprint(&p)).await else {
            continue;
        };
        if !forced && now == seen {
            continue;
        }
        seen = now;
        let p = path.clone();
        match tokio::task::spawn_blocking(move || load_web_config(&p)).await {
            Ok(Ok(loaded)) => {
                state.auth().replace(loaded.web);
                *tls.write() = loaded.tls;
                tracing::info!(file = %path.display(), "web config reloaded");
            }
            Ok(Err(e)) => tracing::error!(
                file = %path.display(),
                error = format!("{e:#}"),
                "web config reload failed; keeping the previous configuration"
            ),
            Err(e) => tracing::error!(error = %e, "web config reload task failed"),
        }
    }
}

/// Runs the server until a termination signal.
///
/// # Errors
/// When the listener cannot bind or the database cannot open.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    tracing::info!(listen = %listener.local_addr()?, data_dir = %config.data_dir.display(), "starting tidemark");
    let mut api_options = ApiOptions::from(&config);
    let tls: http::TlsSlot = Arc::default();
    // The SIGHUP handler is installed before the listener serves, so an
    // early SIGHUP reloads instead of killing the process.
    let mut reload = None;
    if let Some(path) = &config.web_config_file {
        let loaded = load_web_config(path)
            .with_context(|| format!("--web.config.file={}", path.display()))?;
        tracing::info!(
            file = %path.display(),
            tls = loaded.tls.is_some(),
            users = loaded.web.users.len(),
            "web config loaded"
        );
        api_options.web = loaded.web;
        *tls.write() = loaded.tls;
        let hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            .context("listening for SIGHUP")?;
        reload = Some((path.clone(), hup));
    }
    let rules_opts = RulesOptions {
        files: config.rule_files.clone(),
        default_interval_ms: config.rules_evaluation_interval.as_millis() as i64,
        external_labels: config.external_labels.iter().cloned().collect(),
        timings: AlertTimings {
            for_outage_tolerance_ms: config.rules_alert_for_outage_tolerance.as_millis() as i64,
            for_grace_period_ms: config.rules_alert_for_grace_period.as_millis() as i64,
            resend_delay_ms: config.rules_alert_resend_delay.as_millis() as i64,
        },
    };
    let mut rules_hup = None;
    if !rules_opts.files.is_empty() {
        // Refuse a bad rule file before anything else starts.
        let check = rules_opts.clone();
        let groups = crate::promql::run_on_query_thread(move || load_groups(&check))
            .await
            .context("rule file check task")?
            .context("--rule-files")?;
        tracing::info!(groups = groups.len(), "rule files loaded");
        rules_hup = Some(
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
                .context("listening for SIGHUP")?,
        );
    }
    // A bad bucket config is refused before the store opens.
    let shipper_opts = match &config.objstore_config_file {
        Some(path) => Some(shipper_options(&config, path)?),
        None => None,
    };
    let state = AppState::with_options(api_options);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let server = tokio::spawn(http::serve(
        listener,
        api::router(state.clone()),
        http::HttpLimits::from(&config),
        tls.clone(),
        stop_rx.clone(),
    ));
    let reloader = reload.map(|(path, hup)| {
        tokio::spawn(web_config_reload_loop(
            path,
            state.clone(),
            tls.clone(),
            hup,
            stop_rx.clone(),
        ))
    });

    let mut opts = Options::from(&config);
    // Ready as soon as the blocks are mapped and the WAL replayed: the
    // walk over every block's series and chunks runs in the first
    // compaction, which quarantines a damaged block then.
    opts.defer_block_checks = true;
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
    // Before the first compaction: from here on nothing unshipped is
    // merged or deleted.
    let shipper = match shipper_opts {
        Some(opts) => Some(
            Shipper::start(db.clone(), opts, state.shipper_metrics())
                .context("starting the block shipper")?,
        ),
        None => None,
    };
    let compactor = tokio::spawn(compaction_loop(
        db.clone(),
        config.compaction_interval,
        stop_rx.clone(),
    ));

    let recovery = tokio::spawn(storage_recovery_loop(db.clone(), stop_rx.clone()));

    let notifier = state.notifier().map(|n| tokio::spawn(n.run()));
    let mut rules = None;
    if let Some(hup) = rules_hup {
        let mgr = RuleManager::new(
            db.clone(),
            state.engine().clone(),
            rules_opts,
            state.notifier(),
            state.rule_metrics(),
        );
        mgr.reload().await.context("--rule-files")?;
        state.set_rules(mgr.clone());
        rules = Some((
            mgr.clone(),
            tokio::spawn(rules_reload_loop(mgr, hup, stop_rx.clone())),
        ));
    }

    shutdown_signal().await;
    tracing::info!("shutting down");
    state.set_not_ready();
    let _ = stop_tx.send(true);
    if let Some((mgr, reloader)) = rules {
        let _ = reloader.await;
        mgr.stop().await;
    }
    if let Some(n) = notifier {
        n.abort();
    }
    if let Err(e) = compactor.await {
        tracing::error!(error = %e, "compaction task failed");
    }
    if let Some(s) = shipper {
        // An upload cut short is done again at the next start.
        let stopped = tokio::task::spawn_blocking(move || s.stop(SHIPPER_STOP_WAIT)).await;
        if !matches!(stopped, Ok(true)) {
            tracing::warn!(
                "block upload still in flight at shutdown; it is retried at the next start"
            );
        }
    }
    if let Err(e) = recovery.await {
        tracing::error!(error = %e, "storage recovery task failed");
    }
    if let Some(r) = reloader {
        let _ = r.await;
    }
    if let Err(e) = server.await {
        tracing::error!(error = %e, "HTTP server task failed");
    }
    tokio::task::spawn_blocking(move || db.close())
        .await
        .context("storage close task")?
        .context("closing storage")?;
    tracing::info!("stopped cleanly");
    // Everything is durable and closed: the head's series and the
    // remote-write series cache (the last references are the state's)
    // go with the process, not one allocation at a time, which took
    // seconds at a million series after the data was safe.
    std::mem::forget(state);
    Ok(())
}

/// Runs the store role (`tidemark store`) until a termination signal:
/// the HTTP API read only over a [`Db`] on the cache directory (its head
/// stays empty), ready after the first bucket sync ([`crate::store`]).
///
/// # Errors
/// When the listener cannot bind, the bucket config is missing or bad, or
/// the cache directory cannot be opened.
pub async fn run_store(args: crate::config::StoreArgs) -> anyhow::Result<()> {
    let mut config = args.config;
    let Some(path) = config.objstore_config_file.clone() else {
        anyhow::bail!("tidemark store needs --objstore.config.file=FILE (the bucket to serve)");
    };
    if !config.rule_files.is_empty() {
        anyhow::bail!(
            "--rule-files is not supported by tidemark store; evaluate rules on an ingesting node"
        );
    }
    // Tombstones written into cached blocks would be lost at the next
    // download and never reach the bucket.
    config.enable_admin_api = false;
    let bucket = BucketConfig::load(&path)
        .with_context(|| format!("--objstore.config.file={}", path.display()))?;
    let store_opts = crate::store::StoreOptions {
        store: bucket
            .build()
            .with_context(|| format!("--objstore.config.file={}", path.display()))?,
        prefix: bucket.prefix.clone(),
        sync_interval: args
            .sync_interval
            .max(std::time::Duration::from_millis(100)),
        index_cache_bytes: args.index_cache_size,
        chunk_cache_bytes: args.chunk_cache_size,
    };
    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    tracing::info!(listen = %listener.local_addr()?, cache_dir = %args.cache_dir.display(), "starting tidemark store");
    let mut api_options = ApiOptions::from(&config);
    api_options.read_only = true;
    let role = start_role(&config, listener, api_options)?;
    let (state, stop_rx) = (role.state.clone(), role.stop_rx.clone());
    let metrics = state
        .store_metrics()
        .context("store metrics are registered in read-only mode")?;
    // Before the Db opens the directory: phase 0's whole blocks go.
    let bucket_store = Arc::new(
        crate::store::BucketStore::open(store_opts, &args.cache_dir, metrics)
            .context("preparing the store cache directory")?,
    );
    let opts = Options::from(&config);
    let dir = args.cache_dir.clone();
    let db = Arc::new(
        tokio::task::spawn_blocking(move || Db::open(dir, opts))
            .await
            .context("cache open task")?
            .context("opening the store cache directory")?,
    );
    let receiver = Arc::new(Receiver::with_metrics(
        db.clone(),
        ReceiverOptions::from(&config),
        state.ingest_metrics(),
    ));
    let ready = {
        let state = state.clone();
        let db = db.clone();
        Box::new(move || {
            tracing::info!("first bucket sync finished; ready");
            state.set_ready(db, receiver);
        })
    };
    let syncer = tokio::spawn(crate::store::sync_loop(
        bucket_store,
        db.clone(),
        ready,
        stop_rx.clone(),
    ));
    run_until_signal(role, ("bucket sync", syncer)).await;
    tokio::task::spawn_blocking(move || db.close())
        .await
        .context("storage close task")?
        .context("closing the store cache")?;
    tracing::info!("stopped cleanly");
    Ok(())
}

/// A read-only role's HTTP side (store, query), serving.
struct RoleServer {
    state: Arc<AppState>,
    stop_tx: tokio::sync::watch::Sender<bool>,
    stop_rx: tokio::sync::watch::Receiver<bool>,
    server: tokio::task::JoinHandle<()>,
}

/// Serves the API of a read-only role on `listener`: `api_options` with
/// the users and TLS of `--web.config.file` (read once; no reload).
fn start_role(
    config: &Config,
    listener: TcpListener,
    mut api_options: ApiOptions,
) -> anyhow::Result<RoleServer> {
    let tls: http::TlsSlot = Arc::default();
    if let Some(p) = &config.web_config_file {
        let loaded =
            load_web_config(p).with_context(|| format!("--web.config.file={}", p.display()))?;
        api_options.web = loaded.web;
        *tls.write() = loaded.tls;
    }
    let state = AppState::with_options(api_options);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let server = tokio::spawn(http::serve(
        listener,
        api::router(state.clone()),
        http::HttpLimits::from(config),
        tls,
        stop_rx.clone(),
    ));
    Ok(RoleServer {
        state,
        stop_tx,
        stop_rx,
        server,
    })
}

/// Runs a read-only role until SIGTERM/SIGINT, then marks it not ready,
/// tells its tasks to stop and waits for its background task and its
/// HTTP server.
async fn run_until_signal<T>(
    role: RoleServer,
    (what, background): (&str, tokio::task::JoinHandle<T>),
) {
    shutdown_signal().await;
    tracing::info!("shutting down");
    role.state.set_not_ready();
    let _ = role.stop_tx.send(true);
    if let Err(e) = background.await {
        tracing::error!(error = %e, "{what} task failed");
    }
    if let Err(e) = role.server.await {
        tracing::error!(error = %e, "HTTP server task failed");
    }
}

/// Longest wait at shutdown for a block upload in flight.
const SHIPPER_STOP_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Reads `--objstore.config.file` and builds the shipper's options.
fn shipper_options(config: &Config, path: &Path) -> anyhow::Result<ShipperOptions> {
    let bucket = BucketConfig::load(path)
        .with_context(|| format!("--objstore.config.file={}", path.display()))?;
    if config.external_labels.is_empty() {
        anyhow::bail!(
            "--objstore.config.file needs at least one --external-label (e.g. cluster=eu,replica=a): \
             the labels identify this node's blocks in the bucket, as Prometheus's external labels do for Thanos"
        );
    }
    let mut opts = ShipperOptions::new(&bucket, config.external_labels.iter().cloned().collect())
        .with_context(|| format!("--objstore.config.file={}", path.display()))?;
    opts.sync_interval = config.shipper_sync_interval;
    opts.max_backoff = config.shipper_max_backoff.max(opts.min_backoff);
    tracing::info!(file = %path.display(), "shipping blocks to object storage");
    Ok(opts)
}

/// Reloads the rule files on SIGHUP and when they change (polled every
/// [`RULE_FILES_POLL`]) until `stop`; a failed reload keeps the rules in
/// force.
async fn rules_reload_loop(
    mgr: Arc<RuleManager>,
    mut hup: tokio::signal::unix::Signal,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut poll = tokio::time::interval(RULE_FILES_POLL);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let why = tokio::select! {
            _ = hup.recv() => "SIGHUP",
            _ = poll.tick() => {
                if !mgr.files_changed() {
                    continue;
                }
                "rule files changed"
            }
            _ = stop.changed() => return,
        };
        match mgr.reload().await {
            Ok(n) => tracing::info!(groups = n, why, "rule files reloaded"),
            Err(e) => {
                tracing::error!(error = %e, why, "rule reload failed; keeping the rules in force")
            }
        }
    }
}

/// How often the rule files are checked for changes.
const RULE_FILES_POLL: std::time::Duration = std::time::Duration::from_secs(3);

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
