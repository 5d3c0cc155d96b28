//! `POST /api/v1/read`: Prometheus remote read, so a Prometheus can use
//! Tidemark as long-term storage through `remote_read`. Both response types:
//! `SAMPLES` (one snappy-compressed `ReadResponse`) and
//! `STREAMED_XOR_CHUNKS` (frames of `ChunkedReadResponse`: uvarint length,
//! big-endian CRC-32C of the message, message; chunks are XOR chunks, which
//! our codec writes bit-compatibly with Prometheus).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use prost::Message;

use crate::api::AppState;
use crate::ingest::proto::prometheus as pb;
use crate::model::{MatchOp, Matcher};
use crate::storage::chunk::{XorAppender, SAMPLES_PER_CHUNK};
use crate::storage::{encoding, Db};

/// Largest accepted compressed read request.
const MAX_READ_BODY: usize = 32 << 20;
/// Series per streamed frame (Prometheus sends about 1 MiB frames).
const SERIES_PER_FRAME: usize = 64;

fn error(status: StatusCode, msg: String) -> Response {
    (status, format!("{msg}\n")).into_response()
}

fn matchers(q: &pb::Query) -> Result<Vec<Matcher>, String> {
    q.matchers
        .iter()
        .map(|m| {
            let op = match pb::label_matcher::Type::try_from(m.r#type) {
                Ok(pb::label_matcher::Type::Eq) => MatchOp::Equal,
                Ok(pb::label_matcher::Type::Neq) => MatchOp::NotEqual,
                Ok(pb::label_matcher::Type::Re) => MatchOp::Regex,
                Ok(pb::label_matcher::Type::Nre) => MatchOp::NotRegex,
                Err(_) => return Err(format!("unknown matcher type {}", m.r#type)),
            };
            Matcher::new(op, m.name.clone(), m.value.clone()).map_err(|e| e.to_string())
        })
        .collect()
}

fn labels_pb(l: &crate::model::Labels) -> Vec<pb::Label> {
    l.iter()
        .map(|x| pb::Label {
            name: Bytes::copy_from_slice(x.name.as_bytes()),
            value: Bytes::copy_from_slice(x.value.as_bytes()),
        })
        .collect()
}

/// The samples of every query, as `ReadResponse`.
fn read_samples(db: &Db, queries: &[pb::Query]) -> Result<pb::ReadResponse, String> {
    let mut results = Vec::with_capacity(queries.len());
    for q in queries {
        let ms = matchers(q)?;
        let timeseries = db
            .querier(q.start_timestamp_ms, q.end_timestamp_ms)
            .select(&ms)
            .iter()
            .map(|s| pb::TimeSeries {
                labels: labels_pb(s.labels()),
                samples: s
                    .samples()
                    .map(|x| pb::Sample {
                        value: x.v,
                        timestamp: x.t,
                    })
                    .collect(),
                ..Default::default()
            })
            .filter(|ts| !ts.samples.is_empty())
            .collect();
        results.push(pb::QueryResult { timeseries });
    }
    Ok(pb::ReadResponse { results })
}

/// Appends one frame: uvarint length, CRC-32C (big-endian), message.
fn frame(out: &mut Vec<u8>, msg: &pb::ChunkedReadResponse) {
    let bytes = msg.encode_to_vec();
    encoding::put_uvarint(out, bytes.len() as u64);
    out.extend_from_slice(&crc32c::crc32c(&bytes).to_be_bytes());
    out.extend_from_slice(&bytes);
}

/// The samples of every query as XOR chunks in streamed frames.
fn read_chunks(db: &Db, queries: &[pb::Query]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    for (qi, q) in queries.iter().enumerate() {
        let ms = matchers(q)?;
        let series = db
            .querier(q.start_timestamp_ms, q.end_timestamp_ms)
            .select(&ms);
        let mut batch = Vec::new();
        for s in &series {
            let mut chunks = Vec::new();
            let mut app = XorAppender::new();
            let flush = |app: &mut XorAppender, chunks: &mut Vec<pb::Chunk>| {
                if let (Some(min), Some(max)) = (app.first_t(), app.last_t()) {
                    let done = std::mem::take(app);
                    chunks.push(pb::Chunk {
                        min_time_ms: min,
                        max_time_ms: max,
                        r#type: pb::chunk::Encoding::Xor as i32,
                        data: Bytes::from(done.finish().into_vec()),
                    });
                }
            };
            for x in s.samples() {
                if app.num_samples() >= SAMPLES_PER_CHUNK {
                    flush(&mut app, &mut chunks);
                }
                app.append(x.t, x.v);
            }
            flush(&mut app, &mut chunks);
            if !chunks.is_empty() {
                batch.push(pb::ChunkedSeries {
                    labels: labels_pb(s.labels()),
                    chunks,
                });
            }
            if batch.len() >= SERIES_PER_FRAME {
                frame(
                    &mut out,
                    &pb::ChunkedReadResponse {
                        chunked_series: std::mem::take(&mut batch),
                        query_index: qi as i64,
                    },
                );
            }
        }
        if !batch.is_empty() {
            frame(
                &mut out,
                &pb::ChunkedReadResponse {
                    chunked_series: batch,
                    query_index: qi as i64,
                },
            );
        }
    }
    Ok(out)
}

pub(crate) async fn read(State(state): State<Arc<AppState>>, body: Body) -> Response {
    let Some(db) = state.db().cloned() else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "storage is starting (WAL replay in progress); retry".into(),
        );
    };
    let Ok(body) = axum::body::to_bytes(body, MAX_READ_BODY).await else {
        return error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("read request body is larger than the limit of {MAX_READ_BODY} bytes"),
        );
    };
    let raw = match snap::raw::Decoder::new().decompress_vec(&body) {
        Ok(r) => r,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("body is not valid snappy (block format): {e}"),
            )
        }
    };
    let req = match pb::ReadRequest::decode(raw.as_slice()) {
        Ok(r) => r,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("body is not a valid prometheus.ReadRequest protobuf: {e}"),
            )
        }
    };
    // The first accepted type we implement; none listed means SAMPLES.
    let streamed = req
        .accepted_response_types
        .iter()
        .find_map(|t| match pb::read_request::ResponseType::try_from(*t) {
            Ok(pb::read_request::ResponseType::Samples) => Some(false),
            Ok(pb::read_request::ResponseType::StreamedXorChunks) => Some(true),
            Err(_) => None,
        })
        .unwrap_or(false);
    if !req.accepted_response_types.is_empty()
        && !req
            .accepted_response_types
            .iter()
            .any(|t| matches!(t, 0 | 1))
    {
        return error(
            StatusCode::BAD_REQUEST,
            format!(
                "none of the accepted response types {:?} is supported",
                req.accepted_response_types
            ),
        );
    }
    let queries = req.queries;
    let result = tokio::task::spawn_blocking(move || {
        if streamed {
            read_chunks(&db, &queries).map(|b| (true, b))
        } else {
            read_samples(&db, &queries).map(|r| (false, r.encode_to_vec()))
        }
    })
    .await;
    match result {
        Ok(Ok((true, frames))) => {
            let mut resp = Response::new(Body::from(frames));
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(
                    "application/x-streamed-protobuf; proto=prometheus.ChunkedReadResponse",
                ),
            );
            resp
        }
        Ok(Ok((false, raw))) => match snap::raw::Encoder::new().compress_vec(&raw) {
            Ok(compressed) => {
                let mut resp = Response::new(Body::from(compressed));
                let h = resp.headers_mut();
                h.insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/x-protobuf"),
                );
                h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("snappy"));
                resp
            }
            Err(e) => error(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("compressing the response: {e}"),
            ),
        },
        Ok(Err(msg)) => error(StatusCode::BAD_REQUEST, msg),
        Err(_) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "read task was cancelled; retry".into(),
        ),
    }
}
