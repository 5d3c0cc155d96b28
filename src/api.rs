//! The HTTP surface: health, self-metrics, remote write, and the Prometheus
//! query API (`/api/v1/*`) that Grafana and `promtool` call. Depends on
//! `promql`, `ingest` and `storage`; nothing below imports it.
//!
//! One file per endpoint group: [`query`] (query, query_range,
//! format_query, parse_query, query_exemplars), [`series`] (series, labels,
//! label values), [`metadata`], [`status`] (buildinfo, config, flags,
//! runtimeinfo, tsdb, range, rules, alerts), [`admin`]; shared parsing in
//! [`params`], JSON encoding in [`response`], error mapping in [`error`].

mod admin;
pub mod auth;
mod call_cost;
mod error;
mod health;
mod ingest_threads;
mod metadata;
mod metrics;
pub(crate) use metrics::{exposition, ProcessCollector};
mod otlp;
mod panic;
mod params;
mod query;
mod read;
mod response;
mod rules;
mod series;
mod status;
mod write;

pub use error::{ApiError, ErrorType};

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use tower_http::compression::CompressionLayer;

use prometheus_client::registry::Registry;

use crate::ingest::{IngestMetrics, Receiver};
use crate::promql::{Engine, EngineOptions, Source};
use crate::storage::Db;

/// Settings of the HTTP API, built from the command line by `config`.
#[derive(Debug, Clone, Default)]
pub struct ApiOptions {
    /// The PromQL engine's limits (timeout, max samples, lookback).
    pub engine: EngineOptions,
    /// Whether `/api/v1/admin/*` may run (`--enable-admin-api`).
    pub enable_admin_api: bool,
    /// Every command-line flag with its effective value, for
    /// `status/flags` and `status/config`.
    pub flags: Vec<(String, String)>,
    /// What `status/runtimeinfo` reports as `storageRetention`.
    pub storage_retention: String,
    /// How many remote writes run at once, and how long more may wait.
    pub write: WriteConcurrency,
    /// Users, roles and response headers from `--web.config.file` (empty:
    /// no authentication).
    pub web: crate::web_config::WebConfig,
    /// Where to send alerts (`--alertmanager.url`); `None` sends none.
    pub notifier: Option<crate::rules::NotifierOptions>,
    /// The store role: no writes (remote write, OTLP and admin endpoints
    /// answer 405), `tidemark_store_*` metrics registered.
    pub read_only: bool,
    /// The query role: queries read a fan-out over other endpoints,
    /// `tidemark_query_endpoint_*` metrics registered.
    pub query_role: bool,
    /// `--external-label`s, served by `/api/v1/status/range` so a query
    /// role can attach them to this endpoint's series.
    pub external_labels: std::collections::BTreeMap<String, String>,
}

/// Bounds remote writes on their own, so a flood of writes queues (then
/// gets a retryable 503) instead of taking every worker and all memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteConcurrency {
    /// Remote-write requests decoded and appended at once (`--write.max-concurrency`).
    pub max_concurrency: usize,
    /// Longest a request waits for its turn before it gets 503
    /// (`--write.max-queue-duration`).
    pub max_queue_duration: std::time::Duration,
}

impl Default for WriteConcurrency {
    fn default() -> Self {
        Self {
            max_concurrency: 64,
            max_queue_duration: std::time::Duration::from_secs(60),
        }
    }
}

/// State shared by all handlers.
///
/// `db` and `receiver` are set once when storage has opened; `ready`
/// flips with them and back at shutdown. Everything else is immutable.
pub struct AppState {
    db: OnceLock<Arc<Db>>,
    /// What queries read when it is not `db` (the query role's fan-out).
    source: OnceLock<Arc<dyn Source>>,
    receiver: OnceLock<Arc<Receiver>>,
    ready: AtomicBool,
    registry: Registry,
    ingest_metrics: Arc<IngestMetrics>,
    storage_gauges: metrics::StorageGauges,
    http_metrics: metrics::HttpMetrics,
    engine: Engine,
    options: ApiOptions,
    started: SystemTime,
    /// One permit per remote write in flight.
    write_slots: tokio::sync::Semaphore,
    /// Where remote writes are decoded, logged and applied.
    ingest_threads: ingest_threads::IngestThreads,
    /// Users and roles in force (replaced on reload).
    auth: auth::Auth,
    /// The rule manager, when `--rule-files` names any.
    rules: OnceLock<Arc<crate::rules::RuleManager>>,
    /// `prometheus_rule_*` metrics.
    rule_metrics: Arc<crate::rules::RuleMetrics>,
    /// `tidemark_shipper_*` metrics (zero unless shipping is on).
    shipper_metrics: Arc<crate::shipper::ShipperMetrics>,
    /// `tidemark_store_*` metrics (the store role only).
    store_metrics: Option<Arc<crate::store::StoreMetrics>>,
    /// The Alertmanager client, when `--alertmanager.url` names any.
    notifier: Option<Arc<crate::rules::Notifier>>,
    /// `tidemark_query_endpoint_*` metrics (the query role only).
    query_metrics: Option<Arc<crate::query::QueryMetrics>>,
}

impl AppState {
    /// State for a server whose storage is still opening, with default
    /// API options and every layer's metrics registered.
    pub fn new() -> Arc<Self> {
        Self::with_options(ApiOptions::default())
    }

    /// Like [`AppState::new`] with explicit API options.
    pub fn with_options(options: ApiOptions) -> Arc<Self> {
        let mut registry = Registry::default();
        let ingest_metrics = Arc::new(IngestMetrics::register(&mut registry));
        let storage_gauges = metrics::StorageGauges::register(&mut registry);
        let http_metrics = metrics::HttpMetrics::register(&mut registry);
        registry.register_collector(Box::new(metrics::ProcessCollector));
        let auth = auth::Auth::register(options.web.clone(), &mut registry);
        let rule_metrics = crate::rules::RuleMetrics::register(&mut registry);
        let shipper_metrics = crate::shipper::ShipperMetrics::register(&mut registry);
        let store_metrics = options
            .read_only
            .then(|| crate::store::StoreMetrics::register(&mut registry));
        let query_metrics = options
            .query_role
            .then(|| crate::query::QueryMetrics::register(&mut registry));
        let notifier = options
            .notifier
            .clone()
            .map(|o| crate::rules::Notifier::new(o, &mut registry));
        Arc::new(Self {
            auth,
            rules: OnceLock::new(),
            rule_metrics,
            shipper_metrics,
            store_metrics,
            notifier,
            query_metrics,
            db: OnceLock::new(),
            source: OnceLock::new(),
            receiver: OnceLock::new(),
            ready: AtomicBool::new(false),
            registry,
            ingest_metrics,
            storage_gauges,
            http_metrics,
            engine: Engine::new(options.engine.clone()),
            write_slots: tokio::sync::Semaphore::new(options.write.max_concurrency.max(1)),
            ingest_threads: ingest_threads::IngestThreads::per_core(),
            options,
            started: SystemTime::now(),
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

    /// Installs what queries read instead of a local database (the query
    /// role's fan-out) and marks the server ready.
    pub fn set_ready_source(&self, source: Arc<dyn Source>) {
        let _ = self.source.set(source);
        self.ready.store(true, Ordering::Release);
    }

    /// Installs the rule manager (`/api/v1/rules`, `/api/v1/alerts`, reload).
    pub fn set_rules(&self, manager: Arc<crate::rules::RuleManager>) {
        let _ = self.rules.set(manager);
    }

    /// The rule manager, if rules are configured.
    pub fn rules(&self) -> Option<&Arc<crate::rules::RuleManager>> {
        self.rules.get()
    }

    /// The `tidemark_shipper_*` metrics, for the block shipper.
    pub fn shipper_metrics(&self) -> Arc<crate::shipper::ShipperMetrics> {
        self.shipper_metrics.clone()
    }

    /// The `tidemark_store_*` metrics, in the store role.
    pub fn store_metrics(&self) -> Option<Arc<crate::store::StoreMetrics>> {
        self.store_metrics.clone()
    }

    /// The `tidemark_query_endpoint_*` metrics, in the query role.
    pub fn query_metrics(&self) -> Option<Arc<crate::query::QueryMetrics>> {
        self.query_metrics.clone()
    }

    /// The `prometheus_rule_*` metrics, for the rule manager.
    pub fn rule_metrics(&self) -> Arc<crate::rules::RuleMetrics> {
        self.rule_metrics.clone()
    }

    /// The Alertmanager client, if `--alertmanager.url` names any.
    pub fn notifier(&self) -> Option<Arc<crate::rules::Notifier>> {
        self.notifier.clone()
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

    /// The PromQL engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Users, roles and response headers; [`auth::Auth::replace`] puts a
    /// reloaded `--web.config.file` in force.
    pub fn auth(&self) -> &auth::Auth {
        &self.auth
    }

    /// The API options in force.
    pub fn options(&self) -> &ApiOptions {
        &self.options
    }

    /// The database, or the not-ready error (in the query role, which has
    /// none: an error saying so).
    fn require_db(&self) -> Result<Arc<Db>, ApiError> {
        if self.options.query_role {
            return Err(ApiError::NoLocalStorage);
        }
        self.db().cloned().ok_or(NOT_READY)
    }

    /// What queries and the series/label calls read: the installed source,
    /// else the database; or the not-ready error.
    fn require_source(&self) -> Result<Arc<dyn Source>, ApiError> {
        if let Some(s) = self.source.get() {
            return Ok(s.clone());
        }
        Ok(self.require_db()? as Arc<dyn Source>)
    }

    /// [`AppState::require_source`] as the request asks for it: the
    /// query role honours `partial_response`; elsewhere it is ignored.
    fn require_source_for(&self, params: &params::Params) -> Result<Arc<dyn Source>, ApiError> {
        let source = self.require_source()?;
        Ok(source.for_request(partial_param(params)?).unwrap_or(source))
    }

    /// The installed source that is not the local database (the query
    /// role's fan-out).
    fn fanout_source(&self) -> Option<Arc<dyn Source>> {
        self.source.get().cloned()
    }

    /// The receiver, or the not-ready error.
    fn require_receiver(&self) -> Result<Arc<Receiver>, ApiError> {
        self.receiver().cloned().ok_or(NOT_READY)
    }
}

/// A request's `partial_response` (Thanos's parameter, Go's boolean
/// spellings), `None` when absent.
fn partial_param(params: &params::Params) -> Result<Option<bool>, ApiError> {
    match params.get("partial_response") {
        None | Some("") => Ok(None),
        Some("1" | "t" | "T" | "true" | "TRUE" | "True") => Ok(Some(true)),
        Some("0" | "f" | "F" | "false" | "FALSE" | "False") => Ok(Some(false)),
        Some(other) => Err(ApiError::InvalidParam {
            name: "partial_response",
            reason: format!("{other:?} is not a boolean"),
        }),
    }
}

const NOT_READY: ApiError = ApiError::Unavailable("Service Unavailable");

/// Prometheus answers API calls with a plain-text 503 until the TSDB is
/// ready (`web.go` `testReady`); so do we, during WAL replay and shutdown.
async fn ready_gate(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    if state.is_ready() {
        next.run(req).await
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable").into_response()
    }
}

/// Lets at most `--write.max-concurrency` remote writes run at once; the
/// rest wait their turn up to `--write.max-queue-duration`, then get a
/// retryable 503.
async fn write_gate(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let limits = state.options.write;
    match tokio::time::timeout(limits.max_queue_duration, state.write_slots.acquire()).await {
        Ok(Ok(_permit)) => next.run(req).await,
        _ => ApiError::TooManyWrites {
            limit: limits.max_concurrency,
            waited: limits.max_queue_duration,
        }
        .into_response(),
    }
}

/// In the store role, every endpoint that writes answers 405.
async fn read_only_gate(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    if state.options.read_only {
        return ApiError::ReadOnly.into_response();
    }
    next.run(req).await
}

/// Unknown paths: Prometheus's JSON error under `/api/v1/`, plain 404
/// elsewhere.
async fn fallback(uri: Uri) -> Response {
    if uri.path().starts_with("/api/") {
        ApiError::UnknownEndpoint {
            path: uri.path().to_string(),
        }
        .into_response()
    } else {
        (StatusCode::NOT_FOUND, "404 page not found\n").into_response()
    }
}

/// The router with every endpoint.
pub fn router(state: Arc<AppState>) -> Router {
    // Grafana and client_golang POST forms to these and fall back to GET
    // on 405; `label/<name>/values` is GET-only, as in Prometheus.
    let api = Router::new()
        .route("/api/v1/query", get(query::query).post(query::query))
        .route(
            "/api/v1/query_range",
            get(query::query_range).post(query::query_range),
        )
        .route(
            "/api/v1/query_exemplars",
            get(query::query_exemplars).post(query::query_exemplars),
        )
        .route(
            "/api/v1/format_query",
            get(query::format_query).post(query::format_query),
        )
        .route(
            "/api/v1/parse_query",
            get(query::parse_query).post(query::parse_query),
        )
        .route("/api/v1/series", get(series::series).post(series::series))
        .route("/api/v1/labels", get(series::labels).post(series::labels))
        .route("/api/v1/label/{name}/values", get(series::label_values))
        .route("/api/v1/metadata", get(metadata::metadata))
        .route("/api/v1/status/buildinfo", get(status::buildinfo))
        .route("/api/v1/status/config", get(status::config))
        .route("/api/v1/status/flags", get(status::flags))
        .route("/api/v1/status/runtimeinfo", get(status::runtimeinfo))
        .route("/api/v1/status/tsdb", get(status::tsdb))
        .route("/api/v1/status/range", get(status::range))
        .route("/api/v1/rules", get(rules::rules).post(rules::rules))
        .route("/api/v1/alerts", get(rules::alerts))
        .route("/-/reload", post(rules::reload).put(rules::reload))
        .route(
            "/api/v1/admin/tsdb/{action}",
            post(admin::admin)
                .put(admin::admin)
                .layer(middleware::from_fn_with_state(
                    state.clone(),
                    read_only_gate,
                )),
        )
        .route_layer(middleware::from_fn_with_state(state.clone(), ready_gate));
    let router = Router::new()
        .route("/-/healthy", get(health::healthy).head(health::healthy))
        .route("/-/ready", get(health::ready).head(health::ready))
        .route("/metrics", get(metrics::metrics))
        .route(
            "/api/v1/otlp/v1/metrics",
            post(otlp::metrics).layer(middleware::from_fn_with_state(
                state.clone(),
                read_only_gate,
            )),
        )
        .route("/api/v1/read", post(read::read))
        // The receiver enforces its own (configurable) body limit.
        .route(
            "/api/v1/write",
            post(write::write)
                .layer(DefaultBodyLimit::disable())
                .layer(middleware::from_fn_with_state(state.clone(), write_gate))
                .layer(middleware::from_fn_with_state(
                    state.clone(),
                    read_only_gate,
                )),
        )
        .merge(api)
        // After every route is added: a route layer sees the matched
        // route pattern, which is the bounded `handler` label.
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            metrics::track_http,
        ))
        .fallback(fallback)
        // gzip/deflate when the client's Accept-Encoding asks for it.
        .layer(CompressionLayer::new().gzip(true).deflate(true))
        // Outside every route and the fallback: no path is served (not even
        // a 404) to a client without the role, except the health probes.
        .layer(middleware::from_fn_with_state(state.clone(), auth::require));
    // Outermost: a panic anywhere below becomes a 500 and a log line; the
    // connection and the process live on.
    panic::with_panic_guard(router).with_state(state)
}
