//! Metadata about series: `/api/v1/series`, `/api/v1/labels`,
//! `/api/v1/label/<name>/values`, with `match[]`, `start`, `end` (default:
//! all time) and `limit`, as Prometheus's `series`, `labelNames` and
//! `labelValues` (`web/api/v1/api.go`). Results are sorted and never
//! `null`. Parses `match[]` and reads through a querier on a query thread
//! via [`run_guarded`]: one `--query.max-concurrency` slot, the query
//! time-out (503 when it passes), the deadline checked between selectors
//! and series.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::Response;

use crate::api::error::ApiError;
use crate::api::params::{unescape_label_name, Params, MAX_TIME_MS, MIN_TIME_MS};
use crate::api::query::{run_guarded, Budget};
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

/// Parses the window and runs a read through [`run_guarded`] with the
/// engine's time-out.
async fn guarded<T: Send + 'static>(
    state: &AppState,
    params: Params,
    f: impl FnOnce(&Db, Window, &Budget) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let db = state.require_db()?;
    let engine = state.engine().clone();
    run_guarded(&engine, engine.options().timeout, move |budget| {
        let w = Window::parse(&params)?;
        f(&db, w, budget)
    })
    .await
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

/// Sorted, deduplicated strings from each matcher set (or all series),
/// and what could not be read (warnings: the answer is partial).
fn union_strings(
    db: &Db,
    w: &Window,
    budget: &Budget,
    f: impl Fn(&crate::storage::Querier, &[Matcher]) -> Vec<String>,
) -> Result<(Vec<String>, Vec<String>), ApiError> {
    let q = db.querier(w.start, w.end);
    if w.matchers.is_empty() {
        let all = f(&q, &[]);
        return Ok((all, q.take_problems()));
    }
    let mut set = BTreeSet::new();
    for ms in &w.matchers {
        budget.check("label selection")?;
        set.extend(f(&q, ms));
    }
    Ok((set.into_iter().collect(), q.take_problems()))
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
    let body = guarded(&state, params, move |db, w, budget| {
        let q = db.querier(w.start, w.end);
        let mut set: BTreeSet<Labels> = BTreeSet::new();
        for ms in &w.matchers {
            budget.check("series selection")?;
            for (i, s) in q.select(ms).into_iter().enumerate() {
                if i % 1024 == 0 {
                    budget.check("series selection")?;
                }
                set.insert(s.labels().clone());
            }
        }
        let mut all: Vec<Labels> = set.into_iter().collect();
        let mut warnings = apply_limit(&mut all, w.limit);
        // Blocks that could not be read: the answer is partial.
        warnings.extend(q.take_problems());
        let mut out = String::from("[");
        for (i, l) in all.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            response::push_labels(&mut out, l);
        }
        out.push(']');
        Ok(response::success_body(&out, &warnings, &[]))
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
    let body = guarded(&state, params, move |db, w, budget| {
        let (mut names, problems) = union_strings(db, &w, budget, |q, ms| q.label_names(ms))?;
        let mut warnings = apply_limit(&mut names, w.limit);
        warnings.extend(problems);
        let mut out = String::new();
        response::push_str_array(&mut out, &names);
        Ok(response::success_body(&out, &warnings, &[]))
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
    let body = guarded(&state, params, move |db, w, budget| {
        let (mut values, problems) =
            union_strings(db, &w, budget, |q, ms| q.label_values(&name, ms))?;
        let mut warnings = apply_limit(&mut values, w.limit);
        warnings.extend(problems);
        let mut out = String::new();
        response::push_str_array(&mut out, &values);
        Ok(response::success_body(&out, &warnings, &[]))
    })
    .await?;
    Ok(response::json(body))
}
