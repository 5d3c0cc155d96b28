//! `/api/v1/query`, `/api/v1/query_range`, `/api/v1/query_exemplars`,
//! `/api/v1/format_query` and `/api/v1/parse_query`, with Prometheus's
//! parameter order, checks and messages (`web/api/v1/api.go` `query`,
//! `queryRange`, `queryExemplars`, `formatQuery`, `parseQuery`).
//!
//! Parsing and evaluation run through [`run_guarded`] (shared with the
//! metadata and status reads): a slot of `--query.max-concurrency` is
//! awaited within the query's time-out, then the work runs on a query
//! thread with a known stack; when the client goes away the handler future
//! is dropped, and [`CancelOnDrop`] sets the cancel flag so the work stops
//! at its next check.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::response::Response;
use promql_parser::parser::{Expr, VectorSelector};
use promql_parser::util::{walk_expr, ExprVisitor};

use crate::api::call_cost;
use crate::api::error::ApiError;
use crate::api::params::{selector_matchers, Params, MAX_TIME_MS, MIN_TIME_MS};
use crate::api::response::{self, TRUNCATED_WARNING};
use crate::api::AppState;
use crate::model::Labels;
use crate::promql::{
    deadline_after, run_here, run_on_query_thread, Engine, QueryError, QueryOptions, QueryResult,
    Value,
};

/// How long past its deadline a guarded task may take to notice it before
/// the client is answered 503 anyway (the task stops at its next check).
const DEADLINE_GRACE: Duration = Duration::from_secs(1);

/// Prometheus's resolution limit for range queries (`queryRange`).
const MAX_POINTS_PER_SERIES: i128 = 11_000;

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Sets the cancel flag when dropped: on completion (harmless) and when
/// axum drops the handler because the client disconnected.
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Parses `query` with Prometheus's error wording. Call it on a query
/// thread (see [`run_guarded`]): deep queries need its stack.
fn parse_query_param(params: &Params) -> Result<Expr, ApiError> {
    Engine::parse(params.get("query").unwrap_or("")).map_err(|e| ApiError::BadQuery(e.to_string()))
}

/// `timeout` and `lookback_delta` as engine per-query options.
fn query_options(params: &Params) -> Result<QueryOptions, ApiError> {
    let timeout = params
        .duration_ns("timeout")?
        .map(|ns| Duration::from_nanos(ns.clamp(0, u64::MAX as i128) as u64));
    let lookback_delta_ms = params
        .duration_ns("lookback_delta")?
        .map(|ns| i64::try_from(ns / 1_000_000).unwrap_or(i64::MAX));
    Ok(QueryOptions {
        cancel: None,
        timeout,
        lookback_delta_ms,
    })
}

/// The deadline and cancel flag of one guarded task.
#[derive(Debug, Clone)]
pub(crate) struct Budget {
    /// When the task must have finished (its time-out counts from the
    /// request's arrival, queueing included).
    pub(crate) deadline: Instant,
    /// Set when the client went away or the answer was given up.
    pub(crate) cancel: Arc<AtomicBool>,
    /// Samples a source may load for this task (`--query.max-samples`).
    pub(crate) max_samples: usize,
    /// Samples loaded so far.
    pub(crate) samples: Arc<std::sync::atomic::AtomicUsize>,
}

/// A guarded task's limits, for the [`crate::promql::Source`] it reads.
impl crate::promql::Budget for Budget {
    fn check(&self) -> Result<(), QueryError> {
        if self.cancel.load(Ordering::Relaxed) {
            return Err(QueryError::Canceled("series selection"));
        }
        if Instant::now() > self.deadline {
            return Err(QueryError::Timeout("series selection"));
        }
        Ok(())
    }

    fn account(&self, n: usize) -> Result<(), QueryError> {
        let total = self
            .samples
            .fetch_add(n, Ordering::Relaxed)
            .saturating_add(n);
        if total > self.max_samples {
            return Err(QueryError::TooManySamples);
        }
        Ok(())
    }

    fn deadline(&self) -> Instant {
        self.deadline
    }

    fn remaining_samples(&self) -> usize {
        self.max_samples
            .saturating_sub(self.samples.load(Ordering::Relaxed))
    }
}

impl Budget {
    /// Fails once the deadline has passed or the task was cancelled; call
    /// it inside loops.
    pub(crate) fn check(&self, what: &'static str) -> Result<(), ApiError> {
        if self.cancel.load(Ordering::Relaxed) {
            return Err(QueryError::Canceled(what).into());
        }
        if Instant::now() > self.deadline {
            return Err(QueryError::Timeout(what).into());
        }
        Ok(())
    }

    /// Time left before the deadline.
    pub(crate) fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }
}

/// Runs `work` as one query-like task: waits for one of the
/// `--query.max-concurrency` slots (503 `timeout` if `timeout` passes while
/// queued), then runs `work` on a query thread (known stack, panics caught)
/// holding the slot until it really ends. The answer is given up with 503
/// shortly after the deadline, and the cancel flag is set whenever this
/// future ends or is dropped, so `work` should call [`Budget::check`].
pub(crate) async fn run_guarded<T: Send + 'static>(
    engine: &Engine,
    timeout: Duration,
    work: impl FnOnce(&Budget) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    run_guarded_as(engine, timeout, None, work).await
}

/// As [`run_guarded`], for a repeated call named `key` (see
/// [`call_cost`]): when its last run took at most
/// [`call_cost::INLINE_MAX`], `work` runs right here on the async worker
/// (panics caught all the same), without the hop to a query thread. The
/// caller passes a key only for work that fits an async worker's stack.
/// Either way the work's time is remembered under `key`.
pub(crate) async fn run_guarded_as<T: Send + 'static>(
    engine: &Engine,
    timeout: Duration,
    key: Option<String>,
    work: impl FnOnce(&Budget) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let deadline = deadline_after(timeout);
    let permit = tokio::time::timeout_at(deadline.into(), engine.slots().clone().acquire_owned())
        .await
        .map_err(|_| QueryError::Timeout("query queue (all --query.max-concurrency slots busy)"))?
        .map_err(|e| ApiError::TaskFailed(e.to_string()))?;
    let cancel = Arc::new(AtomicBool::new(false));
    let _guard = CancelOnDrop(cancel.clone());
    let budget = Budget {
        deadline,
        cancel,
        max_samples: engine.options().max_samples,
        samples: Arc::default(),
    };
    let inline = key_is_cheap(&key);
    let timed = move |budget: &Budget| {
        let started = Instant::now();
        let r = work(budget);
        if let Some(k) = &key {
            call_cost::record(k, started.elapsed());
        }
        r
    };
    if inline {
        let _permit = permit;
        budget.check("query queue")?;
        return run_here(|| timed(&budget)).map_err(|e| ApiError::TaskFailed(e.to_string()))?;
    }
    let task = run_on_query_thread(move || {
        let _permit = permit;
        // The deadline may have passed while queued.
        budget.check("query queue")?;
        timed(&budget)
    });
    match tokio::time::timeout_at((deadline + DEADLINE_GRACE).into(), task).await {
        Ok(r) => r.map_err(|e| ApiError::TaskFailed(e.to_string()))?,
        Err(_) => Err(QueryError::Timeout("query execution").into()),
    }
}

fn key_is_cheap(key: &Option<String>) -> bool {
    key.as_deref().is_some_and(call_cost::is_cheap)
}

/// Parses `query` and evaluates it with `eval` through [`run_guarded`],
/// then encodes the result (also on the query thread: a large matrix takes
/// a while to write).
///
/// `shape` says what, besides the query text, decides the work's cost (the
/// range length and step): a shallow query (see [`crate::promql::shallow`])
/// read from a local source is a repeated call of [`call_cost`] keyed by
/// both. `None`: the source may wait on the network, never inline.
async fn run(
    engine: &Engine,
    params: Params,
    shape: Option<String>,
    mut opts: QueryOptions,
    limit: Option<usize>,
    eval: impl FnOnce(&Expr, &QueryOptions) -> Result<QueryResult, QueryError> + Send + 'static,
) -> Result<Response, ApiError> {
    let timeout = engine.timeout_for(opts.timeout);
    let text = params.get("query").unwrap_or("");
    let key = shape
        .filter(|_| crate::promql::shallow(text))
        .map(|shape| format!("{shape}\0{text}"));
    let body = run_guarded_as(
        engine,
        timeout,
        key,
        move |budget| -> Result<String, ApiError> {
            let expr = parse_query_param(&params)?;
            opts.cancel = Some(budget.cancel.clone());
            opts.timeout = Some(budget.remaining());
            let mut res = eval(&expr, &opts)?;
            if let Some(limit) = limit {
                if truncate(&mut res.value, limit) {
                    res.warnings.push(TRUNCATED_WARNING.to_string());
                }
            }
            Ok(response::query_success_body(
                &res.value,
                &res.warnings,
                &res.infos,
            ))
        },
    )
    .await?;
    Ok(response::json(body))
}

/// Cuts a vector or matrix to `limit` series; reports whether it did.
fn truncate(value: &mut Value, limit: usize) -> bool {
    match value {
        Value::Vector(v) if v.len() > limit => {
            v.truncate(limit);
            true
        }
        Value::Matrix(m) if m.len() > limit => {
            m.truncate(limit);
            true
        }
        _ => false,
    }
}

/// `GET|POST /api/v1/query`: `query`, `time` (default now), `timeout`,
/// `limit`, `lookback_delta`.
pub(crate) async fn query(
    State(state): State<Arc<AppState>>,
    params: Params,
) -> Result<Response, ApiError> {
    let limit = params.limit()?;
    let t = params.time_or("time", now_ms())?;
    let opts = query_options(&params)?;
    let source = state.require_source_for(&params)?;
    let engine = state.engine().clone();
    let e = engine.clone();
    let shape = source.answers_locally().then(|| "instant".to_string());
    run(&engine, params, shape, opts, limit, move |expr, o| {
        e.instant(&*source, expr, t, o)
    })
    .await
}

/// `GET|POST /api/v1/query_range`: `query`, `start`, `end`, `step`,
/// `timeout`, `limit`, `lookback_delta`.
pub(crate) async fn query_range(
    State(state): State<Arc<AppState>>,
    params: Params,
) -> Result<Response, ApiError> {
    let limit = params.limit()?;
    let start = params.time("start")?;
    let end = params.time("end")?;
    if end < start {
        return Err(ApiError::EndBeforeStart);
    }
    let step_ns = params
        .duration_ns("step")?
        .ok_or_else(|| ApiError::InvalidParam {
            name: "step",
            reason: "cannot parse \"\" to a valid duration".into(),
        })?;
    // Steps under a millisecond truncate to 0 in the engine's ms grid.
    if step_ns < 1_000_000 {
        return Err(ApiError::NonPositiveStep);
    }
    if (end as i128 - start as i128) * 1_000_000 / step_ns > MAX_POINTS_PER_SERIES {
        return Err(QueryError::TooManyPoints.into());
    }
    let step = i64::try_from(step_ns / 1_000_000).unwrap_or(i64::MAX);
    let opts = query_options(&params)?;
    let source = state.require_source_for(&params)?;
    let engine = state.engine().clone();
    let e = engine.clone();
    let shape = source
        .answers_locally()
        .then(|| format!("range\0{}\0{step}", i128::from(end) - i128::from(start)));
    run(&engine, params, shape, opts, limit, move |expr, o| {
        e.range(&*source, expr, start, end, step, o)
    })
    .await
}

/// Collects every vector selector of an expression.
#[derive(Default)]
struct Selectors(Vec<VectorSelector>);

impl ExprVisitor for Selectors {
    type Error = std::convert::Infallible;

    fn pre_visit(&mut self, expr: &Expr) -> Result<bool, Self::Error> {
        match expr {
            Expr::VectorSelector(vs) => self.0.push(vs.clone()),
            Expr::MatrixSelector(ms) => self.0.push(ms.vs.clone()),
            _ => {}
        }
        Ok(true)
    }
}

/// `GET|POST /api/v1/query_exemplars`: `query`, `start`, `end` (default all
/// time). Exemplars of series matching any selector of the query, grouped by
/// series; `[]` when none (Grafana needs an array, never `null`).
pub(crate) async fn query_exemplars(
    State(state): State<Arc<AppState>>,
    params: Params,
) -> Result<Response, ApiError> {
    let start = params.time_or("start", MIN_TIME_MS)?;
    let end = params.time_or("end", MAX_TIME_MS)?;
    if end < start {
        return Err(ApiError::EndBeforeStart);
    }
    let receiver = state.require_receiver()?;
    let engine = state.engine().clone();
    let out = run_guarded(&engine, engine.options().timeout, move |budget| {
        exemplars_body(&params, &receiver, start, end, budget)
    })
    .await?;
    Ok(response::ok(&out, &[]))
}

/// The `data` of `query_exemplars`, on a query thread.
fn exemplars_body(
    params: &Params,
    receiver: &crate::ingest::Receiver,
    start: i64,
    end: i64,
    budget: &Budget,
) -> Result<String, ApiError> {
    let expr = parse_query_param(params)?;
    let mut sel = Selectors::default();
    let Ok(_) = walk_expr(&mut sel, &expr);
    let sets = sel
        .0
        .iter()
        .map(|vs| selector_matchers(vs.name.as_deref(), &vs.matchers.matchers))
        .collect::<Result<Vec<_>, _>>()
        .map_err(ApiError::BadQuery)?;
    let exemplars = if sets.is_empty() {
        Vec::new()
    } else {
        receiver.exemplars().select(&[], start, end)
    };
    // Group by series in order of first appearance.
    let mut groups: Vec<(Labels, Vec<usize>)> = Vec::new();
    for (i, e) in exemplars.iter().enumerate() {
        if i % 1024 == 0 {
            budget.check("exemplar selection")?;
        }
        let hit = sets.iter().any(|ms| {
            ms.iter()
                .all(|m| m.matches(e.series.get(m.name()).unwrap_or("")))
        });
        if !hit {
            continue;
        }
        match groups.iter_mut().find(|(l, _)| *l == e.series) {
            Some((_, idx)) => idx.push(i),
            None => groups.push((e.series.clone(), vec![i])),
        }
    }
    let mut out = String::from("[");
    for (gi, (series, idx)) in groups.iter().enumerate() {
        if gi > 0 {
            out.push(',');
        }
        out.push_str("{\"seriesLabels\":");
        response::push_labels(&mut out, series);
        out.push_str(",\"exemplars\":[");
        for (k, &i) in idx.iter().enumerate() {
            let e = &exemplars[i];
            if k > 0 {
                out.push(',');
            }
            out.push_str("{\"labels\":");
            response::push_labels(&mut out, &e.labels);
            out.push_str(",\"value\":\"");
            response::push_float(&mut out, e.value);
            out.push_str("\",\"timestamp\":");
            response::push_timestamp(&mut out, e.t);
            out.push('}');
        }
        out.push_str("]}");
    }
    out.push(']');
    Ok(out)
}

/// `GET|POST /api/v1/format_query`: the query pretty-printed.
pub(crate) async fn format_query(
    State(state): State<Arc<AppState>>,
    params: Params,
) -> Result<Response, ApiError> {
    let engine = state.engine().clone();
    let out = run_guarded(&engine, engine.options().timeout, move |_| {
        let expr = parse_query_param(&params)?;
        let mut out = String::new();
        response::push_json_str(&mut out, &expr.prettify());
        Ok(out)
    })
    .await?;
    Ok(response::ok(&out, &[]))
}

/// `GET|POST /api/v1/parse_query`: the AST as JSON, in the shape of
/// Prometheus's `parser` JSON (as promql-parser's `ser` feature renders it
/// for GreptimeDB); used by Prometheus's own UI only.
pub(crate) async fn parse_query(
    State(state): State<Arc<AppState>>,
    params: Params,
) -> Result<Response, ApiError> {
    let engine = state.engine().clone();
    let data = run_guarded(&engine, engine.options().timeout, move |_| {
        let expr = parse_query_param(&params)?;
        serde_json::to_string(&expr).map_err(|e| ApiError::TaskFailed(e.to_string()))
    })
    .await?;
    Ok(response::ok(&data, &[]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn dropping_the_handler_future_sets_the_cancel_flag() {
        let seen = Arc::new(std::sync::Mutex::new(None::<Arc<AtomicBool>>));
        let (started_tx, started_rx) = std::sync::mpsc::channel();
        let s = seen.clone();
        let fut = async move {
            let engine = Engine::default();
            run_guarded(
                &engine,
                Duration::from_secs(600),
                move |b| -> Result<(), ApiError> {
                    let flag = b.cancel.clone();
                    *s.lock().unwrap() = Some(flag.clone());
                    let _ = started_tx.send(());
                    // Stand-in for a long evaluation that polls the flag.
                    while !flag.load(Ordering::Relaxed) {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    Err(QueryError::Canceled("test").into())
                },
            )
            .await
        };
        let handle = tokio::spawn(fut);
        tokio::task::spawn_blocking(move || started_rx.recv().unwrap())
            .await
            .unwrap();
        handle.abort();
        let _ = handle.await;
        let flag = seen.lock().unwrap().clone().unwrap();
        assert!(flag.load(Ordering::Relaxed));
    }

    #[tokio::test]
    async fn queued_past_the_deadline_is_a_timeout() {
        let engine = Engine::new(crate::promql::EngineOptions {
            max_concurrency: 1,
            ..Default::default()
        });
        let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
        let (started_tx, started_rx) = std::sync::mpsc::channel();
        let e = engine.clone();
        let busy = tokio::spawn(async move {
            run_guarded(&e, Duration::from_secs(600), move |_| {
                let _ = started_tx.send(());
                let _ = release_rx.recv_timeout(Duration::from_secs(60));
                Ok(())
            })
            .await
        });
        tokio::task::spawn_blocking(move || started_rx.recv().unwrap())
            .await
            .unwrap();
        let r = run_guarded(&engine, Duration::from_millis(50), |_| Ok(())).await;
        let err = r.unwrap_err();
        assert_eq!(err.status().as_u16(), 503, "{err}");
        assert!(err.to_string().contains("max-concurrency"), "{err}");
        release_tx.send(()).unwrap();
        busy.await.unwrap().unwrap();
        // The slot is free again.
        run_guarded(&engine, Duration::from_secs(60), |_| Ok(()))
            .await
            .unwrap();
    }

    /// Where a guarded task ran: a query thread or the async worker.
    fn on_query_thread() -> bool {
        std::thread::current().name() == Some("tidemark-query")
    }

    #[tokio::test]
    async fn a_call_cheap_last_time_runs_inline_and_an_expensive_one_does_not() {
        let engine = Engine::default();
        let key = || Some("test|query|placement".to_string());
        let t = Duration::from_secs(60);
        let first = run_guarded_as(&engine, t, key(), |_| Ok(on_query_thread()));
        assert!(first.await.unwrap(), "unknown: a query thread");
        let second = run_guarded_as(&engine, t, key(), |_| Ok(on_query_thread()));
        assert!(!second.await.unwrap(), "cheap last time: inline");
        // This run is slow: the next one takes a query thread again.
        let slow = run_guarded_as(&engine, t, key(), |_| {
            std::thread::sleep(call_cost::INLINE_MAX * 4);
            Ok(on_query_thread())
        });
        assert!(!slow.await.unwrap());
        let after = run_guarded_as(&engine, t, key(), |_| Ok(on_query_thread()));
        assert!(after.await.unwrap(), "slow last time: a query thread");
        // No key: always a query thread.
        for _ in 0..2 {
            let r = run_guarded_as(&engine, t, None, |_| Ok(on_query_thread()));
            assert!(r.await.unwrap());
        }
    }

    #[tokio::test]
    async fn an_inline_task_holds_a_slot_and_its_panic_is_an_internal_error() {
        let engine = Engine::new(crate::promql::EngineOptions {
            max_concurrency: 1,
            ..Default::default()
        });
        let key = || Some("test|query|inline-panic".to_string());
        let t = Duration::from_secs(60);
        run_guarded_as(&engine, t, key(), |_| Ok(())).await.unwrap();
        let e = engine.clone();
        let r: Result<(), ApiError> = run_guarded_as(&engine, t, key(), move |_| {
            assert!(!on_query_thread());
            assert_eq!(e.slots().available_permits(), 0, "the slot is held");
            panic!("inline bug")
        })
        .await;
        let err = r.unwrap_err();
        assert_eq!(err.status().as_u16(), 500);
        assert!(err.to_string().contains("inline bug"), "{err}");
        assert_eq!(engine.slots().available_permits(), 1, "and released");
    }

    #[tokio::test]
    async fn a_panicking_task_is_an_internal_error() {
        let engine = Engine::default();
        let r: Result<(), ApiError> =
            run_guarded(&engine, Duration::from_secs(60), |_| panic!("bug")).await;
        assert_eq!(r.unwrap_err().status().as_u16(), 500);
    }
}
