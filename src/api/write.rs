//! `POST /api/v1/write`: the remote-write receiver over HTTP. Reads the body
//! under the size limit, hands it to [`crate::ingest::Receiver`] on the
//! ingest threads ([`super::ingest_threads`]), waits for the WAL fsync on a
//! blocking thread, and only then answers 204, or 400 with counts by reason
//! for a partial write. 2.0 answers always carry the
//! `X-Prometheus-Remote-Write-*-Written` headers.

use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::api::error::ApiError;
use crate::api::ingest_threads;
use crate::api::AppState;
use crate::ingest::{self, ProtoVersion, WriteOutcome};

const SAMPLES_WRITTEN: &str = "X-Prometheus-Remote-Write-Samples-Written";
const HISTOGRAMS_WRITTEN: &str = "X-Prometheus-Remote-Write-Histograms-Written";
const EXEMPLARS_WRITTEN: &str = "X-Prometheus-Remote-Write-Exemplars-Written";

fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

/// The wall clock in ms (for the future-timestamp limit).
pub(super) fn now_ms() -> i64 {
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
    let started = Instant::now();
    let (version, resp) = handle(&state, &headers, body).await;
    let label = version.map_or("unknown", ProtoVersion::as_str);
    state
        .ingest_metrics()
        .observe_request(label, resp.status().as_u16(), started.elapsed());
    resp
}

async fn handle(
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
) -> (Option<ProtoVersion>, Response) {
    let Some(receiver) = state.receiver().cloned() else {
        let e = ApiError::Unavailable("storage is starting (WAL replay in progress); retry");
        return (None, e.into_response());
    };
    let version = match receiver.version(
        header(headers, "content-type"),
        header(headers, "content-encoding"),
    ) {
        Ok(v) => v,
        Err(e) => return (None, ApiError::from(e).into_response()),
    };
    let fail = |e: ApiError| {
        let resp = e.into_response();
        let resp = match version {
            ProtoVersion::V2 => with_written(resp, 0, 0, 0),
            ProtoVersion::V1 => resp,
        };
        (Some(version), resp)
    };
    let limit = receiver.options().max_body_bytes;
    let body = match axum::body::to_bytes(body, limit).await {
        Ok(b) => b,
        Err(_) => return fail(ingest::Error::BodyTooLarge { limit }.into()),
    };
    let cancelled = || fail(ApiError::Unavailable("write task was cancelled; retry"));
    let writer = Arc::clone(&receiver);
    let pending = match state
        .ingest_threads
        .run(move || writer.write_pending(version, &body, now_ms()))
        .await
    {
        Ok(Ok(p)) => p,
        Ok(Err(e)) => return fail(e.into()),
        Err(_) => return cancelled(),
    };
    // Acknowledged only once durable.
    let ready = pending.is_ready();
    match ingest_threads::wait_durable(ready, move || receiver.finish(pending)).await {
        Ok(Ok(outcome)) => (Some(version), respond(&outcome)),
        Ok(Err(e)) => fail(e.into()),
        Err(_) => cancelled(),
    }
}

fn respond(o: &WriteOutcome) -> Response {
    let resp = if o.is_complete() {
        StatusCode::NO_CONTENT.into_response()
    } else {
        (StatusCode::BAD_REQUEST, o.message()).into_response()
    };
    match o.version {
        ProtoVersion::V2 => with_written(
            resp,
            o.samples_written,
            o.histograms_written,
            o.exemplars_written,
        ),
        ProtoVersion::V1 => resp,
    }
}
