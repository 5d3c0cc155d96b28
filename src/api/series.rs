//! Metadata about series: `/api/v1/series`, `/api/v1/labels`,
//! `/api/v1/label/<name>/values`, with `match[]`, `start`, `end` (default:
//! all time) and `limit`, as Prometheus's `series`, `labelNames` and
//! `labelValues` (`web/api/v1/api.go`). Results are sorted and never
//! `null`. Parses `match[]` and reads through the server's [`Source`] (the
//! local database, or the query role's fan-out) on a query thread
//! via [`run_guarded_as`] (inline when the same call was cheap last time):
//! one `--query.max-concurrency` slot, the query time-out (503 when it
//! passes), the deadline checked between selectors and series.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::Response;

use crate::api::error::ApiError;
use crate::api::params::{unescape_label_name, Params, MAX_TIME_MS, MIN_TIME_MS};
use crate::api::query::{run_guarded_as, Budget};
use crate::api::response::{self, TRUNCATED_WARNING};
use crate::api::AppState;
use crate::model::Matcher;
use crate::promql::Source;

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

/// Parses the window and runs a read through [`run_guarded_as`] with the
/// engine's time-out, as the repeated call `call` (the endpoint and label
/// name) over the window's length and `match[]` texts when the source
/// answers locally: the `match[]`
/// selectors are parsed here, which fits an async worker's stack (see
/// `promql::guard`'s stack tests), so a call known to be cheap runs inline.
async fn guarded<T: Send + 'static>(
    state: &AppState,
    params: Params,
    call: &str,
    f: impl FnOnce(&dyn Source, Window, &Budget) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let source = state.require_source_for(&params)?;
    let engine = state.engine().clone();
    let w = Window::parse(&params)?;
    let key = source.answers_locally().then(|| {
        format!(
            "{call}\0{}\0{}",
            i128::from(w.end) - i128::from(w.start),
            params.all("match[]").join("\0")
        )
    });
    run_guarded_as(&engine, engine.options().timeout, key, move |budget| {
        f(&*source, w, budget)
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

/// Label names (`name` = `None`) or one label's values, as the JSON body.
fn label_strings_body(
    source: &dyn Source,
    name: Option<&str>,
    w: &Window,
    budget: &Budget,
) -> Result<String, ApiError> {
    let mut got = source.label_strings(name, w.start, w.end, &w.matchers, budget)?;
    let mut warnings = apply_limit(&mut got.data, w.limit);
    warnings.append(&mut got.warnings);
    let mut out = String::new();
    response::push_str_array(&mut out, &got.data);
    Ok(response::success_body(&out, &warnings, &[]))
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
    let body = guarded(&state, params, "series", move |source, w, budget| {
        let mut got = source.series(w.start, w.end, &w.matchers, budget)?;
        let all = &mut got.data;
        let mut warnings = apply_limit(all, w.limit);
        warnings.append(&mut got.warnings);
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
    let body = guarded(&state, params, "labels", move |source, w, budget| {
        label_strings_body(source, None, &w, budget)
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
    let call = format!("label_values\0{name}");
    let body = guarded(&state, params, &call, move |source, w, budget| {
        label_strings_body(source, Some(&name), &w, budget)
    })
    .await?;
    Ok(response::json(body))
}
