//! `/api/v1/admin/tsdb/{delete_series,clean_tombstones,snapshot}`. Off
//! unless `--enable-admin-api`, answering Prometheus's `unavailable`
//! "admin APIs disabled" (`web/api/v1/api.go` `deleteSeries` and
//! siblings). When on, they need tombstones and persistent blocks, which
//! arrive with Storage engine II; until then they say so.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::Response;

use crate::api::error::ApiError;
use crate::api::AppState;

pub(crate) async fn admin(
    State(state): State<Arc<AppState>>,
    Path(action): Path<String>,
) -> Result<Response, ApiError> {
    let action: &'static str = match action.as_str() {
        "delete_series" => "delete_series",
        "clean_tombstones" => "clean_tombstones",
        "snapshot" => "snapshot",
        _ => {
            return Err(ApiError::UnknownEndpoint {
                path: format!("/api/v1/admin/tsdb/{action}"),
            })
        }
    };
    if !state.options().enable_admin_api {
        return Err(ApiError::AdminDisabled);
    }
    Err(ApiError::AdminNotImplemented(action))
}
