//! `POST /api/v1/write`: the remote-write receiver over HTTP. Reads the body
//! under the size limit, hands it to [`crate::ingest::Receiver`] on a
//! blocking thread (appends wait for the WAL fsync), and answers 204, or 400
//! with counts by reason for a partial write. 2.0 answers always carry the
//! `X-Prometheus-Remote-Write-*-Written` headers.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::api::error::ApiError;
use crate::api::AppState;
use crate::ingest::{self, ProtoVersion, WriteOutcome};

const SAMPLES_WRITTEN: &str = "X-Prometheus-Remote-Write-Samples-Written";
const HISTOGRAMS_WRITTEN: &str = "X-Prometheus-Remote-Write-Histograms-Written";
const EXEMPLARS_WRITTEN: &str = "X-Prometheus-Remote-Write-Exemplars-Written";

fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Adds the 2.0 written-count headers.
fn with_written(
    mut resp: Response,
    samples: usize,
    histograms: usize,
    exemplars: usize,
) -> Response {
    let h = resp.headers_mut();
    h.insert(SAMPLES_WRITTEN, HeaderValue::from(samples as u64));
    h.insert(HISTOGRAMS_WRITTEN, HeaderValue::from(histograms as u64));
    h.insert(EXEMPLARS_WRITTEN, HeaderValue::from(exemplars as u64));
    resp
}

pub(crate) async fn write(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let Some(receiver) = state.receiver().cloned() else {
        return ApiError::Unavailable("storage is starting (WAL replay in progress); retry")
            .into_response();
    };
    let version = match receiver.version(
        header(&headers, "content-type"),
        header(&headers, "content-encoding"),
    ) {
        Ok(v) => v,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let limit = receiver.options().max_body_bytes;
    let finish = |resp: Response| match version {
        ProtoVersion::V2 => with_written(resp, 0, 0, 0),
        ProtoVersion::V1 => resp,
    };
    let body = match axum::body::to_bytes(body, limit).await {
        Ok(b) => b,
        Err(_) => {
            return finish(ApiError::from(ingest::Error::BodyTooLarge { limit }).into_response())
        }
    };
    let result =
        tokio::task::spawn_blocking(move || receiver.write(version, &body, now_ms())).await;
    let outcome = match result {
        Ok(Ok(o)) => o,
        Ok(Err(e)) => return finish(ApiError::from(e).into_response()),
        Err(_) => {
            return finish(ApiError::Unavailable("write task was cancelled; retry").into_response())
        }
    };
    respond(&outcome)
}

fn respond(o: &WriteOutcome) -> Response {
    let resp = if o.is_complete() {
        StatusCode::NO_CONTENT.into_response()
    } else {
        (StatusCode::BAD_REQUEST, o.message()).into_response()
    };
    match o.version {
        ProtoVersion::V2 => with_written(resp, o.samples_written, 0, o.exemplars_written),
        ProtoVersion::V1 => resp,
    }
}
