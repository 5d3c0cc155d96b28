//! Metadata about series: `/api/v1/series`, `/api/v1/labels`,
//! `/api/v1/label/<name>/values`, with `match[]`, `start`, `end` (default:
//! all time) and `limit`, as Prometheus's `series`, `labelNames` and
//! `labelValues` (`web/api/v1/api.go`). Results are sorted and never
//! `null`. Reads the head through a querier on the blocking pool.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::Response;

use crate::api::error::ApiError;
use crate::api::params::{unescape_label_name, Params, MAX_TIME_MS, MIN_TIME_MS};
use crate::api::response::{self, TRUNCATED_WARNING};
use crate::api::AppState;
use crate::model::{Labels, Matcher};
use crate::storage::Db;

/// The common parameters of the three calls.
struct Window {
    start: i64,
    end: i64,
    limit: Option<usize>,
    matchers: Vec<Vec<Matcher>>,
}

impl Window {
    fn parse(params: &Params) -> Result<Self, ApiError> {
        let limit = params.limit()?;
        let start = params.time_or("start", MIN_TIME_MS)?;
        let end = params.time_or("end", MAX_TIME_MS)?;
        let matchers = params.matchers()?;
        Ok(Self {
            start,
            end,
            limit,
            matchers,
        })
    }
}

/// Runs a read on the blocking pool.
async fn blocking<T: Send + 'static>(
    db: Arc<Db>,
    f: impl FnOnce(&Db) -> T + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(move || f(&db))
        .await
        .map_err(|e| ApiError::TaskFailed(e.to_string()))
}

/// Truncates to `limit`, returning the warnings to attach.
fn apply_limit<T>(items: &mut Vec<T>, limit: Option<usize>) -> Vec<String> {
    match limit {
        Some(l) if items.len() > l => {
            items.truncate(l);
            vec![TRUNCATED_WARNING.to_string()]
        }
        _ => Vec::new(),
    }
}

/// Sorted, deduplicated strings from each matcher set (or all series).
fn union_strings(
    db: &Db,
    w: &Window,
    f: impl Fn(&crate::storage::Querier, &[Matcher]) -> Vec<String>,
) -> Vec<String> {
    let q = db.querier(w.start, w.end);
    if w.matchers.is_empty() {
        return f(&q, &[]);
    }
    let mut set = BTreeSet::new();
    for ms in &w.matchers {
        set.extend(f(&q, ms));
    }
    set.into_iter().collect()
}

/// `GET|POST /api/v1/series`: label sets of the series matching any
/// `match[]` (required).
pub(crate) async fn series(
    State(state): State<Arc<AppState>>,
    params: Params,
) -> Result<Response, ApiError> {
    if params.all("match[]").is_empty() {
        return Err(ApiError::NoMatchParam);
    }
    let w = Window::parse(&params)?;
    let db = state.require_db()?;
    let body = blocking(db, move |db| {
        let q = db.querier(w.start, w.end);
        let mut set: BTreeSet<Labels> = BTreeSet::new();
        for ms in &w.matchers {
            set.extend(q.select(ms).into_iter().map(|s| s.labels().clone()));
        }
        let mut all: Vec<Labels> = set.into_iter().collect();
        let warnings = apply_limit(&mut all, w.limit);
        let mut out = String::from("[");
        for (i, l) in all.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            response::push_labels(&mut out, l);
        }
        out.push(']');
        response::success_body(&out, &warnings, &[])
    })
    .await?;
    Ok(response::json(body))
}

/// `GET|POST /api/v1/labels`: label names, of the series matching any
/// `match[]` when given.
pub(crate) async fn labels(
    State(state): State<Arc<AppState>>,
    params: Params,
) -> Result<Response, ApiError> {
    let w = Window::parse(&params)?;
    let db = state.require_db()?;
    let body = blocking(db, move |db| {
        let mut names = union_strings(db, &w, |q, ms| q.label_names(ms));
        let warnings = apply_limit(&mut names, w.limit);
        let mut out = String::new();
        response::push_str_array(&mut out, &names);
        response::success_body(&out, &warnings, &[])
    })
    .await?;
    Ok(response::json(body))
}

/// `GET /api/v1/label/<name>/values`: values of one label, of the series
/// matching any `match[]` when given. `U__`-escaped UTF-8 names are decoded.
pub(crate) async fn label_values(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    params: Params,
) -> Result<Response, ApiError> {
    let name = unescape_label_name(&name);
    if name.is_empty() {
        return Err(ApiError::InvalidLabelName(name));
    }
    let w = Window::parse(&params)?;
    let db = state.require_db()?;
    let body = blocking(db, move |db| {
        let mut values = union_strings(db, &w, |q, ms| q.label_values(&name, ms));
        let warnings = apply_limit(&mut values, w.limit);
        let mut out = String::new();
        response::push_str_array(&mut out, &values);
        response::success_body(&out, &warnings, &[])
    })
    .await?;
    Ok(response::json(body))
}
