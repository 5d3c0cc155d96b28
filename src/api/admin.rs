//! `/api/v1/admin/tsdb/{delete_series,clean_tombstones,snapshot}`, as
//! Prometheus's `deleteSeries`, `cleanTombstones` and `snapshot`
//! (`web/api/v1/api.go`): off unless `--enable-admin-api` (then
//! `unavailable` "admin APIs disabled"); `delete_series` and
//! `clean_tombstones` answer 204 with no body; `snapshot` answers
//! `{"name": "<snapshot>"}`. The work runs on the blocking pool.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::api::error::ApiError;
use crate::api::params::{Params, MAX_TIME_MS, MIN_TIME_MS};
use crate::api::{response, AppState};
use crate::model::calendar::{civil_from_days, SECS_PER_DAY};
use crate::storage::Db;

pub(crate) async fn admin(
    State(state): State<Arc<AppState>>,
    Path(action): Path<String>,
    params: Params,
) -> Result<Response, ApiError> {
    if !matches!(
        action.as_str(),
        "delete_series" | "clean_tombstones" | "snapshot"
    ) {
        return Err(ApiError::UnknownEndpoint {
            path: format!("/api/v1/admin/tsdb/{action}"),
        });
    }
    if !state.options().enable_admin_api {
        return Err(ApiError::AdminDisabled);
    }
    match action.as_str() {
        "delete_series" => delete_series(&state, &params).await,
        "clean_tombstones" => {
            let db = state.require_db()?;
            run(db, "clean tombstones", |db| {
                db.clean_tombstones().map(|_| ())
            })
            .await?;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        _ => snapshot(&state, &params).await,
    }
}

async fn delete_series(state: &AppState, params: &Params) -> Result<Response, ApiError> {
    if params.all("match[]").is_empty() {
        return Err(ApiError::NoMatchParam);
    }
    let start = params.time_or("start", MIN_TIME_MS)?;
    let end = params.time_or("end", MAX_TIME_MS)?;
    let matchers = params.matchers()?;
    let db = state.require_db()?;
    run(db, "delete series", move |db| {
        for ms in &matchers {
            db.delete(ms, start, end)?;
        }
        Ok(())
    })
    .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn snapshot(state: &AppState, params: &Params) -> Result<Response, ApiError> {
    let skip_head = match params.get("skip_head") {
        None | Some("") => false,
        Some(v) => parse_bool(v).ok_or_else(|| ApiError::InvalidParam {
            name: "skip_head",
            reason: format!("unable to parse boolean 'skip_head' argument: {v:?}"),
        })?,
    };
    let db = state.require_db()?;
    let name = snapshot_name();
    let n = name.clone();
    run(db, "create snapshot", move |db| {
        db.snapshot(&n, skip_head).map(|_| ())
    })
    .await?;
    let mut data = String::from("{\"name\":");
    response::push_json_str(&mut data, &name);
    data.push('}');
    Ok(response::ok(&data, &[]))
}

/// Go's `strconv.ParseBool`.
fn parse_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

/// Prometheus's snapshot name: UTC time `20060102T150405Z` and 16 hex digits.
fn snapshot_name() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let secs = now.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(SECS_PER_DAY), secs.rem_euclid(SECS_PER_DAY));
    let (y, m, d) = civil_from_days(days);
    let random = ahash::RandomState::new().hash_one(now.as_nanos());
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z-{:016x}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        random & 0x7fff_ffff_ffff_ffff
    )
}

async fn run(
    db: Arc<Db>,
    op: &'static str,
    f: impl FnOnce(&Db) -> crate::storage::Result<()> + Send + 'static,
) -> Result<(), ApiError> {
    tokio::task::spawn_blocking(move || f(&db))
        .await
        .map_err(|e| ApiError::TaskFailed(e.to_string()))?
        .map_err(|e| ApiError::AdminFailed {
            op,
            reason: e.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_names_look_like_prometheus() {
        let n = snapshot_name();
        assert_eq!(n.len(), "20171210T211224Z-2be650b6d019eb54".len(), "{n}");
        assert_eq!(&n[8..9], "T");
        assert_eq!(&n[15..17], "Z-");
    }
}
