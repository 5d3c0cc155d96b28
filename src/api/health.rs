//! Liveness and readiness, with Prometheus's status codes: healthy is 200
//! as soon as the process serves HTTP; ready is 200 only after WAL replay,
//! 503 before it and during shutdown.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;

use crate::api::AppState;

pub(crate) async fn healthy() -> (StatusCode, &'static str) {
    (StatusCode::OK, "Tidemark is Healthy.\n")
}

pub(crate) async fn ready(State(state): State<Arc<AppState>>) -> (StatusCode, &'static str) {
    if state.is_ready() {
        (StatusCode::OK, "Tidemark is Ready.\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable\n")
    }
}
