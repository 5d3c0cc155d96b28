//! `/api/v1/query`, `/api/v1/query_range`, `/api/v1/query_exemplars`,
//! `/api/v1/format_query` and `/api/v1/parse_query`, with Prometheus's
//! parameter order, checks and messages (`web/api/v1/api.go` `query`,
//! `queryRange`, `queryExemplars`, `formatQuery`, `parseQuery`).
//!
//! Evaluation runs on the blocking pool; when the client goes away the
//! handler future is dropped, and [`CancelOnDrop`] sets the engine's cancel
//! flag so the evaluation stops at its next check.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::response::Response;
use promql_parser::parser::{Expr, VectorSelector};
use promql_parser::util::{walk_expr, ExprVisitor};

use crate::api::error::ApiError;
use crate::api::params::{selector_matchers, Params, MAX_TIME_MS, MIN_TIME_MS};
use crate::api::response::{self, TRUNCATED_WARNING};
use crate::api::AppState;
use crate::model::Labels;
use crate::promql::{Engine, QueryOptions, QueryResult, Value};

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

/// Parses `query` with Prometheus's error wording.
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
        .map(|ns| (ns / 1_000_000) as i64);
    Ok(QueryOptions {
        cancel: None,
        timeout,
        lookback_delta_ms,
    })
}

/// Runs `eval` on the blocking pool with a cancel flag tied to this
/// future, then encodes the result (also off the async threads: a large
/// matrix takes a while to write).
async fn run(
    mut opts: QueryOptions,
    limit: Option<usize>,
    eval: impl FnOnce(&QueryOptions) -> Result<QueryResult, crate::promql::QueryError> + Send + 'static,
) -> Result<Response, ApiError> {
    let cancel = Arc::new(AtomicBool::new(false));
    opts.cancel = Some(cancel.clone());
    let _guard = CancelOnDrop(cancel);
    let body = tokio::task::spawn_blocking(move || -> Result<String, ApiError> {
        let mut res = eval(&opts)?;
        if let Some(limit) = limit {
            if truncate(&mut res.value, limit) {
                res.warnings.push(TRUNCATED_WARNING.to_string());
            }
        }
        let mut data = String::new();
        response::push_query_data(&mut data, &res.value);
        Ok(response::success_body(&data, &res.warnings, &res.infos))
    })
    .await
    .map_err(|e| ApiError::TaskFailed(e.to_string()))??;
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
    let expr = parse_query_param(&params)?;
    let db = state.require_db()?;
    let engine = state.engine().clone();
    run(opts, limit, move |o| engine.instant(&db, &expr, t, o)).await
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
        return Err(crate::promql::QueryError::TooManyPoints.into());
    }
    let step = (step_ns / 1_000_000) as i64;
    let opts = query_options(&params)?;
    let expr = parse_query_param(&params)?;
    let db = state.require_db()?;
    let engine = state.engine().clone();
    run(opts, limit, move |o| {
        engine.range(&db, &expr, start, end, step, o)
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
    let expr = parse_query_param(&params)?;
    let mut sel = Selectors::default();
    let Ok(_) = walk_expr(&mut sel, &expr);
    let sets = sel
        .0
        .iter()
        .map(|vs| selector_matchers(vs.name.as_deref(), &vs.matchers.matchers))
        .collect::<Result<Vec<_>, _>>()
        .map_err(ApiError::BadQuery)?;
    let receiver = state.require_receiver()?;
    let exemplars = if sets.is_empty() {
        Vec::new()
    } else {
        receiver.exemplars().select(&[], start, end)
    };
    // Group by series in order of first appearance.
    let mut groups: Vec<(Labels, Vec<usize>)> = Vec::new();
    for (i, e) in exemplars.iter().enumerate() {
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
    Ok(response::ok(&out, &[]))
}

/// `GET|POST /api/v1/format_query`: the query pretty-printed.
pub(crate) async fn format_query(params: Params) -> Result<Response, ApiError> {
    let expr = parse_query_param(&params)?;
    let mut out = String::new();
    response::push_json_str(&mut out, &expr.prettify());
    Ok(response::ok(&out, &[]))
}

/// `GET|POST /api/v1/parse_query`: the AST as JSON, in the shape of
/// Prometheus's `parser` JSON (as promql-parser's `ser` feature renders it
/// for GreptimeDB); used by Prometheus's own UI only.
pub(crate) async fn parse_query(params: Params) -> Result<Response, ApiError> {
    let expr = parse_query_param(&params)?;
    let data = serde_json::to_string(&expr).map_err(|e| ApiError::TaskFailed(e.to_string()))?;
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
        let fut = run(QueryOptions::default(), None, move |o| {
            let flag = o.cancel.clone().expect("run installs a cancel flag");
            *s.lock().unwrap() = Some(flag.clone());
            let _ = started_tx.send(());
            // Stand-in for a long evaluation that polls the flag.
            while !flag.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(crate::promql::QueryError::Canceled("test"))
        });
        let handle = tokio::spawn(fut);
        tokio::task::spawn_blocking(move || started_rx.recv().unwrap())
            .await
            .unwrap();
        handle.abort();
        let _ = handle.await;
        let flag = seen.lock().unwrap().clone().unwrap();
        assert!(flag.load(Ordering::Relaxed));
    }
}
