//! `POST /api/v1/otlp/v1/metrics` (Prometheus's path): OTLP/HTTP metrics,
//! protobuf or JSON, optionally gzip. Answers as the OTLP/HTTP spec says:
//! 200 with an `ExportMetricsServiceResponse` in the request's encoding
//! (`partial_success` naming what was refused), 4xx for a request that can
//! never succeed, 503 with `Retry-After` when storage cannot take it.
//!
//! Owns the HTTP shape; decoding, translation and storing are
//! [`crate::ingest::otlp`]'s.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::api::error::ApiError;
use crate::api::ingest_threads;
use crate::api::AppState;
use crate::ingest::otlp;

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// `POST /api/v1/otlp/v1/metrics`.
pub(crate) async fn metrics(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let (Some(db), Some(receiver)) = (state.db().cloned(), state.receiver().cloned()) else {
        return Err(ApiError::Unavailable(
            "storage is starting (WAL replay in progress); retry",
        ));
    };
    let metrics = state.ingest_metrics();
    // Every 4xx is a refused request in `tidemark_otlp_requests_total`.
    let refused = |e: ApiError| {
        metrics.observe_otlp_refused();
        e
    };
    let encoding =
        otlp::encoding_of(header_str(&headers, "content-type")).map_err(|e| refused(e.into()))?;
    let max_body = receiver.options().max_body_bytes;
    let body = axum::body::to_bytes(body, max_body)
        .await
        .map_err(|_| refused(ApiError::OtlpBodyTooLarge { limit: max_body }))?;
    let content_encoding = header_str(&headers, "content-encoding").map(str::to_string);
    let now_ms = super::write::now_ms();
    let task_failed =
        |_: ingest_threads::JobFailed| ApiError::TaskFailed("OTLP write task failed".to_string());
    // Decoded, translated, logged and applied on the ingest threads; the
    // wait for the WAL fsync off them (as `POST /api/v1/write`).
    let pending = state
        .ingest_threads
        .run(move || {
            let opts = receiver.options();
            let req = otlp::decode(
                encoding,
                content_encoding.as_deref(),
                &body,
                opts.max_decompressed_bytes,
                &opts.limits,
            )?;
            otlp::write_pending(
                &db,
                &req,
                otlp::WriteSettings {
                    translate: &opts.otlp,
                    limits: &opts.limits,
                    max_t: now_ms.saturating_add(opts.max_future_ms),
                },
            )
        })
        .await
        .map_err(task_failed)?;
    let (outcome, durable) = pending.map_err(|e| refused(e.into()))?;
    let ready = durable.is_ready();
    let outcome = ingest_threads::wait_durable(ready, move || durable.wait())
        .await
        .map_err(task_failed)?
        .map(|()| outcome);
    let outcome = outcome.map_err(|e| {
        let e = otlp::OtlpError::from(crate::storage::Error::from(e));
        refused(e.into())
    })?;
    metrics.observe_otlp(&outcome);
    let content_type = match encoding {
        otlp::OtlpEncoding::Protobuf => "application/x-protobuf",
        otlp::OtlpEncoding::Json => "application/json",
    };
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, content_type)],
        otlp::encode_response(&outcome.response(), encoding),
    )
        .into_response())
}
