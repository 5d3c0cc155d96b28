//! `POST /api/v1/read`: Prometheus remote read, so a Prometheus can use
//! Tidemark as long-term storage through `remote_read`. Both response types:
//! `SAMPLES` (one snappy-compressed `ReadResponse`) and
//! `STREAMED_XOR_CHUNKS` (frames of `ChunkedReadResponse`: uvarint length,
//! big-endian CRC-32C of the message, message; chunks are XOR chunks, which
//! our codec writes bit-compatibly with Prometheus, and for native
//! histograms Prometheus's histogram and float histogram chunks). Native
//! histograms go in `histograms` of `SAMPLES` answers.
//!
//! Every input is bounded ([`crate::ingest::ReadLimits`]): the declared
//! decompressed size is checked before anything is allocated; each query
//! needs a matcher that selects something; a read returns at most
//! `--storage.remote.read-sample-limit` samples and runs at most
//! `--query.timeout`. Streamed responses are sent frame by frame as they
//! are encoded (at most `--storage.remote.read-max-bytes-in-frame` of
//! chunks per frame, a few frames buffered), never collected whole.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use prost::Message;
use tokio::sync::mpsc;

use crate::api::error::{ApiError, ReadError};
use crate::api::AppState;
use crate::ingest::proto::prometheus as pb;
use crate::ingest::ReadLimits;
use crate::model::{HistogramValue, MatchOp, Matcher};
use crate::storage::chunk::{encode_histogram_run, Encoding, XorAppender, SAMPLES_PER_CHUNK};
use crate::storage::{encoding, Db};

/// Largest accepted compressed read request (Prometheus's
/// `decodeReadLimit`).
const MAX_READ_BODY: usize = 32 << 20;

/// Frames encoded ahead of the client: the memory a slow reader can pin.
const FRAMES_IN_FLIGHT: usize = 2;

/// The matchers of query `index`, refusing a query with none that selects
/// anything (every matcher matching the empty string would read every
/// series).
fn matchers(index: usize, q: &pb::Query) -> Result<Vec<Matcher>, ReadError> {
    let ms = q
        .matchers
        .iter()
        .map(|m| {
            let op = match pb::label_matcher::Type::try_from(m.r#type) {
                Ok(pb::label_matcher::Type::Eq) => MatchOp::Equal,
                Ok(pb::label_matcher::Type::Neq) => MatchOp::NotEqual,
                Ok(pb::label_matcher::Type::Re) => MatchOp::Regex,
                Ok(pb::label_matcher::Type::Nre) => MatchOp::NotRegex,
                Err(_) => {
                    return Err(ReadError::BadMatcher {
                        index,
                        reason: format!("unknown matcher type {}", m.r#type),
                    })
                }
            };
            Matcher::new(op, m.name.clone(), m.value.clone()).map_err(|e| ReadError::BadMatcher {
                index,
                reason: e.to_string(),
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    if ms.iter().all(Matcher::matches_empty) {
        return Err(ReadError::NoMatchers { index });
    }
    Ok(ms)
}

fn labels_pb(l: &crate::model::Labels) -> Vec<pb::Label> {
    l.iter()
        .map(|x| pb::Label {
            name: Bytes::copy_from_slice(x.name.as_bytes()),
            value: Bytes::copy_from_slice(x.value.as_bytes()),
        })
        .collect()
}

/// The sample limit and the deadline of one read.
struct Budget {
    sample_limit: usize,
    samples: usize,
    deadline: Instant,
    timeout: Duration,
}

impl Budget {
    fn new(limits: &ReadLimits, timeout: Duration) -> Self {
        Self {
            sample_limit: limits.sample_limit,
            samples: 0,
            deadline: Instant::now() + timeout,
            timeout,
        }
    }

    /// Counts one sample.
    fn sample(&mut self) -> Result<(), ReadError> {
        self.samples += 1;
        if self.sample_limit > 0 && self.samples > self.sample_limit {
            return Err(ReadError::SampleLimit {
                limit: self.sample_limit,
            });
        }
        Ok(())
    }

    /// Fails past the deadline.
    fn check_time(&self) -> Result<(), ReadError> {
        if Instant::now() > self.deadline {
            return Err(ReadError::Timeout(self.timeout));
        }
        Ok(())
    }
}

/// The samples of every query, as `ReadResponse`.
fn read_samples(
    db: &Db,
    queries: &[pb::Query],
    budget: &mut Budget,
) -> Result<pb::ReadResponse, ReadError> {
    let mut results = Vec::with_capacity(queries.len());
    for (qi, q) in queries.iter().enumerate() {
        let ms = matchers(qi, q)?;
        let mut timeseries = Vec::new();
        let querier = db.querier(q.start_timestamp_ms, q.end_timestamp_ms);
        let selected = querier.select(&ms);
        complete(&querier)?;
        for s in selected {
            budget.check_time()?;
            let mut samples = Vec::new();
            for x in s.samples() {
                budget.sample()?;
                samples.push(pb::Sample {
                    value: x.v,
                    timestamp: x.t,
                });
            }
            let mut histograms = Vec::new();
            if s.has_histograms() {
                for (t, h) in s.histogram_values() {
                    budget.sample()?;
                    histograms.push(histogram_pb(t, &h));
                }
            }
            if !samples.is_empty() || !histograms.is_empty() {
                timeseries.push(pb::TimeSeries {
                    labels: labels_pb(s.labels()),
                    samples,
                    histograms,
                    ..Default::default()
                });
            }
        }
        complete(&querier)?;
        results.push(pb::QueryResult { timeseries });
    }
    Ok(pb::ReadResponse { results })
}

/// Fails when `q` could not read all it should have (see
/// [`crate::storage::Querier::take_problems`]).
fn complete(q: &crate::storage::Querier) -> Result<(), ReadError> {
    let problems = q.take_problems();
    if problems.is_empty() {
        Ok(())
    } else {
        Err(ReadError::Incomplete(problems.join("; ")))
    }
}

/// A histogram sample as remote read's protobuf message (Prometheus's
/// `HistogramToHistogramProto` / `FloatHistogramToHistogramProto`).
fn histogram_pb(t: i64, h: &HistogramValue) -> pb::Histogram {
    use pb::histogram::{Count, ZeroCount};
    let spans = |s: &[crate::model::Span]| -> Vec<pb::BucketSpan> {
        s.iter()
            .map(|s| pb::BucketSpan {
                offset: s.offset,
                length: s.length,
            })
            .collect()
    };
    match h {
        HistogramValue::Int(h) => pb::Histogram {
            count: Some(Count::CountInt(h.count)),
            sum: h.sum,
            schema: h.schema,
            zero_threshold: h.zero_threshold,
            zero_count: Some(ZeroCount::ZeroCountInt(h.zero_count)),
            negative_spans: spans(&h.negative_spans),
            negative_deltas: h.negative_buckets.clone(),
            positive_spans: spans(&h.positive_spans),
            positive_deltas: h.positive_buckets.clone(),
            reset_hint: h.counter_reset_hint as i32,
            timestamp: t,
            custom_values: h.custom_values.clone(),
            ..Default::default()
        },
        HistogramValue::Float(h) => pb::Histogram {
            count: Some(Count::CountFloat(h.count)),
            sum: h.sum,
            schema: h.schema,
            zero_threshold: h.zero_threshold,
            zero_count: Some(ZeroCount::ZeroCountFloat(h.zero_count)),
            negative_spans: spans(&h.negative_spans),
            negative_counts: h.negative_buckets.clone(),
            positive_spans: spans(&h.positive_spans),
            positive_counts: h.positive_buckets.clone(),
            reset_hint: h.counter_reset_hint as i32,
            timestamp: t,
            custom_values: h.custom_values.clone(),
            ..Default::default()
        },
    }
}

/// One frame: uvarint length, CRC-32C (big-endian), message.
fn frame(msg: &pb::ChunkedReadResponse) -> Bytes {
    let bytes = msg.encode_to_vec();
    let mut out = Vec::with_capacity(bytes.len() + 14);
    encoding::put_uvarint(&mut out, bytes.len() as u64);
    out.extend_from_slice(&crc32c::crc32c(&bytes).to_be_bytes());
    out.extend_from_slice(&bytes);
    Bytes::from(out)
}

/// Builds frames of at most about `max_bytes` of chunk data each and hands
/// each to `send` as soon as it is full. A series larger than a frame is
/// split over several frames (same labels, consecutive), as Prometheus
/// does.
struct Framer<'a> {
    max_bytes: usize,
    query_index: i64,
    series: Vec<pb::ChunkedSeries>,
    bytes: usize,
    send: &'a mut dyn FnMut(Bytes) -> bool,
}

impl Framer<'_> {
    /// Adds one chunk of the series with `labels` (the last series of the
    /// frame, or a new one).
    fn push(&mut self, labels: &crate::model::Labels, chunk: pb::Chunk) -> Result<(), Sent> {
        let size = chunk.data.len() + 24;
        let same = self
            .series
            .last()
            .is_some_and(|s| same_labels(&s.labels, labels));
        if !same {
            self.series.push(pb::ChunkedSeries {
                labels: labels_pb(labels),
                chunks: Vec::new(),
            });
            self.bytes += labels
                .iter()
                .map(|l| l.name.len() + l.value.len() + 4)
                .sum::<usize>();
        }
        if let Some(s) = self.series.last_mut() {
            s.chunks.push(chunk);
        }
        self.bytes += size;
        if self.bytes >= self.max_bytes {
            self.flush()?;
        }
        Ok(())
    }

    /// Sends what is buffered as one frame.
    fn flush(&mut self) -> Result<(), Sent> {
        if self.series.is_empty() {
            return Ok(());
        }
        let msg = pb::ChunkedReadResponse {
            chunked_series: std::mem::take(&mut self.series),
            query_index: self.query_index,
        };
        self.bytes = 0;
        if (self.send)(frame(&msg)) {
            Ok(())
        } else {
            Err(Sent::Gone)
        }
    }
}

/// The client went away: stop encoding.
#[derive(Debug)]
enum Sent {
    Gone,
}

fn same_labels(pb: &[pb::Label], l: &crate::model::Labels) -> bool {
    pb.len() == l.len()
        && pb
            .iter()
            .zip(l.iter())
            .all(|(a, b)| a.name == b.name.as_bytes() && a.value == b.value.as_bytes())
}

/// Why streaming stopped.
enum StreamStop {
    Error(ReadError),
    Gone,
}

impl From<ReadError> for StreamStop {
    fn from(e: ReadError) -> Self {
        StreamStop::Error(e)
    }
}

impl From<Sent> for StreamStop {
    fn from(_: Sent) -> Self {
        StreamStop::Gone
    }
}

/// The samples of every query as XOR chunks in frames, each handed to
/// `send` as soon as it is full; `send` answers false when the client is
/// gone.
fn stream_chunks(
    db: &Db,
    queries: &[pb::Query],
    budget: &mut Budget,
    max_bytes_in_frame: usize,
    send: &mut dyn FnMut(Bytes) -> bool,
) -> Result<(), StreamStop> {
    // Every query is checked before the first frame goes out.
    let all: Vec<Vec<Matcher>> = queries
        .iter()
        .enumerate()
        .map(|(i, q)| matchers(i, q))
        .collect::<Result<_, _>>()?;
    for (qi, (q, ms)) in queries.iter().zip(&all).enumerate() {
        let mut framer = Framer {
            max_bytes: max_bytes_in_frame.max(1),
            query_index: qi as i64,
            series: Vec::new(),
            bytes: 0,
            send: &mut *send,
        };
        let querier = db.querier(q.start_timestamp_ms, q.end_timestamp_ms);
        let selected = querier.select(ms);
        complete(&querier)?;
        for s in selected {
            budget.check_time()?;
            let histograms = if s.has_histograms() {
                s.histogram_values()
            } else {
                Vec::new()
            };
            let mut hist = &histograms[..];
            let mut app = XorAppender::new();
            for x in s.samples() {
                budget.sample()?;
                // Histograms before this sample go first, in their own
                // chunks: a series' chunks are in time order.
                let before = hist.partition_point(|(t, _)| *t < x.t);
                if before > 0 {
                    if app.num_samples() > 0 {
                        framer.push(s.labels(), finish(&mut app))?;
                    }
                    push_histograms(&mut framer, s.labels(), &hist[..before], budget)?;
                    hist = &hist[before..];
                }
                if app.num_samples() >= SAMPLES_PER_CHUNK {
                    framer.push(s.labels(), finish(&mut app))?;
                    budget.check_time()?;
                }
                app.append(x.t, x.v);
            }
            if app.num_samples() > 0 {
                framer.push(s.labels(), finish(&mut app))?;
            }
            push_histograms(&mut framer, s.labels(), hist, budget)?;
            // A chunk that could not be read ends the stream with an error.
            complete(&querier)?;
        }
        framer.flush()?;
    }
    Ok(())
}

/// Histogram samples as Prometheus histogram chunks (integer or float, as
/// stored), counted against the budget.
fn push_histograms(
    framer: &mut Framer<'_>,
    labels: &crate::model::Labels,
    hist: &[(i64, HistogramValue)],
    budget: &mut Budget,
) -> Result<(), StreamStop> {
    if hist.is_empty() {
        return Ok(());
    }
    for _ in hist {
        budget.sample()?;
    }
    for (encoding, min, max, bytes) in encode_histogram_run(hist) {
        let r#type = match encoding {
            Encoding::FloatHistogram => pb::chunk::Encoding::FloatHistogram,
            _ => pb::chunk::Encoding::Histogram,
        };
        framer.push(
            labels,
            pb::Chunk {
                min_time_ms: min,
                max_time_ms: max,
                r#type: r#type as i32,
                data: Bytes::from(bytes.into_vec()),
            },
        )?;
        budget.check_time()?;
    }
    Ok(())
}

/// The appender's samples as a chunk; the appender starts over.
fn finish(app: &mut XorAppender) -> pb::Chunk {
    let (min, max) = (app.first_t().unwrap_or(0), app.last_t().unwrap_or(0));
    let done = std::mem::take(app);
    pb::Chunk {
        min_time_ms: min,
        max_time_ms: max,
        r#type: pb::chunk::Encoding::Xor as i32,
        data: Bytes::from(done.finish().into_vec()),
    }
}

/// A response body fed frame by frame from the encoding task; an error
/// after the first frame ends the body with an error, so the client sees a
/// broken stream rather than a short one that looks complete.
struct FrameBody {
    /// The frame received before answering.
    first: Option<Bytes>,
    rx: mpsc::Receiver<Result<Bytes, ReadError>>,
}

impl http_body::Body for FrameBody {
    type Data = Bytes;
    type Error = ReadError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, ReadError>>> {
        if let Some(f) = self.first.take() {
            return Poll::Ready(Some(Ok(http_body::Frame::data(f))));
        }
        self.rx
            .poll_recv(cx)
            .map(|m| m.map(|r| r.map(http_body::Frame::data)))
    }
}

/// Decompresses a snappy block with the remote-write decompressor (the
/// declared size is checked before any allocation), in read's errors.
fn decompress(body: &[u8], limit: usize) -> Result<Vec<u8>, ReadError> {
    use crate::ingest::Error as I;
    crate::ingest::decode::decompress(body, limit).map_err(|e| match e {
        I::DecompressedTooLarge { size, limit } => ReadError::DecompressedTooLarge { size, limit },
        other => ReadError::Snappy(match other {
            I::Snappy { reason } => reason,
            e => e.to_string(),
        }),
    })
}

pub(crate) async fn read(State(state): State<Arc<AppState>>, body: Body) -> Response {
    match handle(&state, body).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn handle(state: &AppState, body: Body) -> Result<Response, ApiError> {
    if state.options().query_role {
        return Err(ApiError::NoLocalStorage);
    }
    let (Some(db), Some(receiver)) = (state.db().cloned(), state.receiver()) else {
        return Err(ApiError::Unavailable(
            "storage is starting (WAL replay in progress); retry",
        ));
    };
    let limits = receiver.options().read;
    let timeout = state.engine().options().timeout;
    let Ok(body) = axum::body::to_bytes(body, MAX_READ_BODY).await else {
        return Err(ReadError::BodyTooLarge {
            limit: MAX_READ_BODY,
        }
        .into());
    };
    let raw = decompress(&body, limits.max_decompressed_bytes)?;
    drop(body);
    let req =
        pb::ReadRequest::decode(raw.as_slice()).map_err(|e| ReadError::Protobuf(e.to_string()))?;
    // The first accepted type we implement; none listed means SAMPLES.
    let streamed = req.accepted_response_types.iter().find_map(|t| {
        match pb::read_request::ResponseType::try_from(*t) {
            Ok(pb::read_request::ResponseType::Samples) => Some(false),
            Ok(pb::read_request::ResponseType::StreamedXorChunks) => Some(true),
            Err(_) => None,
        }
    });
    let streamed = match streamed {
        Some(s) => s,
        None if req.accepted_response_types.is_empty() => false,
        None => {
            return Err(ReadError::UnsupportedResponseTypes(req.accepted_response_types).into())
        }
    };
    // Matchers are checked here, so a bad query is a 400 before anything
    // is read or sent.
    for (i, q) in req.queries.iter().enumerate() {
        matchers(i, q)?;
    }
    let queries = req.queries;
    let mut budget = Budget::new(&limits, timeout);
    if !streamed {
        let encoded = tokio::task::spawn_blocking(move || {
            read_samples(&db, &queries, &mut budget).map(|r| r.encode_to_vec())
        })
        .await
        .map_err(|e| ReadError::TaskFailed(e.to_string()))??;
        let compressed = snap::raw::Encoder::new()
            .compress_vec(&encoded)
            .map_err(|e| ReadError::Encode(e.to_string()))?;
        let mut resp = Response::new(Body::from(compressed));
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-protobuf"),
        );
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("snappy"));
        return Ok(resp);
    }
    let (tx, mut rx) = mpsc::channel::<Result<Bytes, ReadError>>(FRAMES_IN_FLIGHT);
    tokio::task::spawn_blocking(move || {
        let mut send = |f: Bytes| tx.blocking_send(Ok(f)).is_ok();
        let r = stream_chunks(
            &db,
            &queries,
            &mut budget,
            limits.max_bytes_in_frame,
            &mut send,
        );
        if let Err(StreamStop::Error(e)) = r {
            let _ = tx.blocking_send(Err(e));
        }
    });
    // An error before the first frame is an ordinary error answer.
    let first = match rx.recv().await {
        Some(Ok(f)) => Some(f),
        Some(Err(e)) => return Err(e.into()),
        None => None,
    };
    let mut resp = Response::new(Body::new(FrameBody { first, rx }));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(
            "application/x-streamed-protobuf; proto=prometheus.ChunkedReadResponse",
        ),
    );
    Ok(resp)
}
