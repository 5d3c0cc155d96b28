//! The query role's HTTP client to one endpoint: its info
//! (`/api/v1/status/range`), remote read with `STREAMED_XOR_CHUNKS`
//! decoded into series, and the JSON series/label calls.
//!
//! Every answer is bounded: a streamed frame may declare at most
//! [`MAX_FRAME_BYTES`], a JSON body at most [`MAX_JSON_BYTES`], and the
//! samples decoded from all endpoints of one read share the query's
//! remaining `--query.max-samples` ([`SampleCap`]), so a hostile or broken
//! endpoint cannot make this process hold more than a query may. Every
//! call runs under a deadline. Owns no state besides the connection pool.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::rt::TokioExecutor;
use prost::Message;

use crate::ingest::proto::prometheus as pb;
use crate::model::{CounterResetHint, Labels, LabelsBuilder, MatchOp, Matcher, Sample};
use crate::promql::SelectedSeries;
use crate::storage::chunk::{decode_histogram_values, Encoding, XorIter};
use crate::storage::encoding::split_uvarint;

/// Largest streamed remote-read frame accepted (nodes send about
/// `--storage.remote.read-max-bytes-in-frame`, 1 MiB by default).
pub(crate) const MAX_FRAME_BYTES: u64 = 64 << 20;
/// Largest JSON answer accepted (series, labels, info).
pub(crate) const MAX_JSON_BYTES: usize = 64 << 20;

/// Why a call to an endpoint failed.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// Connecting or sending failed.
    #[error("request failed: {0}")]
    Connect(String),
    /// No complete answer before the deadline.
    #[error("no complete answer within the time-out")]
    Timeout,
    /// The endpoint answered with an error status.
    #[error("answered HTTP {status}: {body}")]
    Status {
        /// The HTTP status.
        status: u16,
        /// The start of the body.
        body: String,
    },
    /// The answer does not decode.
    #[error("bad answer: {0}")]
    Decode(String),
    /// The answer is larger than allowed.
    #[error("answer larger than {limit} bytes")]
    TooLarge {
        /// The limit.
        limit: u64,
    },
    /// The samples decoded from all endpoints passed `--query.max-samples`.
    #[error("too many samples")]
    TooManySamples,
}

impl CallError {
    /// The `result` label of `tidemark_query_endpoint_requests_total`.
    pub(crate) fn result_label(&self) -> &'static str {
        match self {
            CallError::Timeout => "timeout",
            CallError::Connect(_) => "unreachable",
            CallError::Status { .. } => "http_error",
            CallError::Decode(_) | CallError::TooLarge { .. } => "bad_answer",
            CallError::TooManySamples => "sample_limit",
        }
    }
}

/// Samples one read may still decode, shared by its endpoints.
#[derive(Debug)]
pub(crate) struct SampleCap(AtomicUsize);

impl SampleCap {
    pub(crate) fn new(n: usize) -> Arc<Self> {
        Arc::new(Self(AtomicUsize::new(n)))
    }

    /// Takes `n` samples from the cap.
    fn take(&self, n: usize) -> Result<(), CallError> {
        self.0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| {
                left.checked_sub(n)
            })
            .map(|_| ())
            .map_err(|_| CallError::TooManySamples)
    }
}

/// What `/api/v1/status/range` says of an endpoint.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EndpointInfo {
    /// First sample time held (`None`: no data).
    pub min_time: Option<i64>,
    /// Last sample time held.
    pub max_time: Option<i64>,
    /// Whether it still ingests (its range grows).
    pub writable: bool,
    /// Its `--external-label`s, attached to its series.
    pub external_labels: Labels,
}

impl EndpointInfo {
    /// Whether the endpoint may hold samples in `[mint, maxt]`.
    pub fn may_overlap(&self, mint: i64, maxt: i64) -> bool {
        match (self.min_time, self.max_time) {
            (Some(lo), Some(hi)) => lo <= maxt && (self.writable || hi >= mint),
            // An empty node may receive data any time; an empty store not.
            _ => self.writable,
        }
    }
}

/// How the query role reaches its endpoints over TLS (`--endpoint.tls*`).
#[derive(Debug, Clone)]
pub struct EndpointTls {
    /// Roots, client certificate, versions.
    pub config: Arc<rustls::ClientConfig>,
    /// The name certificates must carry instead of the address's host.
    pub server_name: Option<rustls::pki_types::ServerName<'static>>,
}

/// The HTTP/1 client (one connection pool for all endpoints), plain or
/// TLS.
#[derive(Clone)]
pub(crate) struct Client {
    http: Http,
    /// `http` or `https`.
    scheme: &'static str,
    /// The `Authorization` header sent to every endpoint, if any.
    authorization: Option<hyper::header::HeaderValue>,
}

/// hyper's pooled client over plain TCP or over TLS.
#[derive(Clone)]
enum Http {
    Plain(HyperClient<HttpConnector, Full<Bytes>>),
    Tls(HyperClient<HttpsConnector<HttpConnector>, Full<Bytes>>),
}

impl Client {
    pub(crate) fn new(
        authorization: Option<hyper::header::HeaderValue>,
        tls: Option<&EndpointTls>,
    ) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(std::time::Duration::from_secs(10)));
        let builder = HyperClient::builder(TokioExecutor::new());
        let (http, scheme) = match tls {
            Some(t) => {
                connector.enforce_http(false);
                let b = hyper_rustls::HttpsConnectorBuilder::new()
                    .with_tls_config((*t.config).clone())
                    .https_only();
                let b = match &t.server_name {
                    Some(n) => b.with_server_name_resolver(
                        hyper_rustls::FixedServerNameResolver::new(n.clone()),
                    ),
                    None => b,
                };
                let c = b.enable_http1().wrap_connector(connector);
                (Http::Tls(builder.build(c)), "https")
            }
            None => (Http::Plain(builder.build(connector)), "http"),
        };
        Self {
            http,
            scheme,
            authorization,
        }
    }

    /// Sends `req` (with the credentials) and returns the response,
    /// failing on a non-2xx status (with the start of the body).
    async fn send(
        &self,
        mut req: hyper::Request<Full<Bytes>>,
    ) -> Result<hyper::Response<hyper::body::Incoming>, CallError> {
        if let Some(a) = &self.authorization {
            req.headers_mut()
                .insert(hyper::header::AUTHORIZATION, a.clone());
        }
        let resp = match &self.http {
            Http::Plain(c) => c.request(req).await,
            Http::Tls(c) => c.request(req).await,
        }
        .map_err(|e| CallError::Connect(error_chain(&e)))?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status().as_u16();
        let body = read_limited(resp.into_body(), 512, true)
            .await
            .map(|b| String::from_utf8_lossy(&b).trim().to_string())
            .unwrap_or_default();
        Err(CallError::Status { status, body })
    }

    /// `GET http://addr/path_and_query`, the JSON envelope's `data` and
    /// `warnings`.
    pub(crate) async fn get_json(
        &self,
        addr: &str,
        path_and_query: &str,
        deadline: Instant,
    ) -> Result<(serde_json::Value, Vec<String>), CallError> {
        let call = async {
            let req = hyper::Request::get(format!("{}://{addr}{path_and_query}", self.scheme))
                .body(Full::new(Bytes::new()))
                .map_err(|e| CallError::Connect(e.to_string()))?;
            let resp = self.send(req).await?;
            let body = read_limited(resp.into_body(), MAX_JSON_BYTES, false).await?;
            let mut v: serde_json::Value =
                serde_json::from_slice(&body).map_err(|e| CallError::Decode(e.to_string()))?;
            if v.get("status").and_then(|s| s.as_str()) != Some("success") {
                return Err(CallError::Decode("status is not \"success\"".into()));
            }
            let warnings = v
                .get("warnings")
                .and_then(|w| w.as_array())
                .map(|a| {
                    a.iter()
                        .filter_map(|s| s.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default();
            Ok((
                v.get_mut("data")
                    .map(serde_json::Value::take)
                    .unwrap_or_default(),
                warnings,
            ))
        };
        tokio::time::timeout_at(deadline.into(), call)
            .await
            .map_err(|_| CallError::Timeout)?
    }

    /// The endpoint's info.
    pub(crate) async fn info(
        &self,
        addr: &str,
        deadline: Instant,
    ) -> Result<EndpointInfo, CallError> {
        let (data, _) = self
            .get_json(addr, "/api/v1/status/range", deadline)
            .await?;
        let time = |k: &str| data.get(k).and_then(serde_json::Value::as_i64);
        let mut b = LabelsBuilder::new();
        if let Some(m) = data.get("externalLabels").and_then(|m| m.as_object()) {
            for (k, v) in m {
                b.push(k, v.as_str().unwrap_or_default());
            }
        }
        Ok(EndpointInfo {
            min_time: time("minTime"),
            max_time: time("maxTime"),
            writable: data
                .get("writable")
                .and_then(serde_json::Value::as_bool)
                .unwrap_or(true),
            external_labels: b
                .build()
                .map_err(|e| CallError::Decode(format!("externalLabels: {e}")))?,
        })
    }

    /// Remote read of `[mint, maxt]` and `matchers` as streamed XOR
    /// chunks, decoded into series (sorted by labels as the endpoint sends
    /// them), every sample taken from `cap`.
    pub(crate) async fn read(
        &self,
        addr: &str,
        mint: i64,
        maxt: i64,
        matchers: &[Matcher],
        cap: &SampleCap,
        deadline: Instant,
    ) -> Result<Vec<SelectedSeries>, CallError> {
        let call = async {
            let req = read_request(self.scheme, addr, mint, maxt, matchers)?;
            let resp = self.send(req).await?;
            let mut body = resp.into_body();
            let mut buf = BytesMut::new();
            let mut out: Vec<SelectedSeries> = Vec::new();
            loop {
                while let Some(msg) = next_frame(&mut buf)? {
                    for s in msg.chunked_series {
                        decode_series(s, mint, maxt, cap, &mut out)?;
                    }
                }
                match body.frame().await {
                    Some(Ok(f)) => {
                        if let Ok(data) = f.into_data() {
                            buf.extend_from_slice(&data);
                        }
                    }
                    Some(Err(e)) => return Err(CallError::Connect(error_chain(&e))),
                    None if buf.is_empty() => return Ok(out),
                    None => return Err(CallError::Decode("stream ends inside a frame".into())),
                }
            }
        };
        tokio::time::timeout_at(deadline.into(), call)
            .await
            .map_err(|_| CallError::Timeout)?
    }
}

/// The error and its sources on one line (hyper's top error says little).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// Reads a body up to `limit` bytes; past it, fails (or with `truncate`,
/// returns the first `limit` bytes).
async fn read_limited(
    mut body: hyper::body::Incoming,
    limit: usize,
    truncate: bool,
) -> Result<Vec<u8>, CallError> {
    let mut out = Vec::new();
    while let Some(f) = body.frame().await {
        let f = f.map_err(|e| CallError::Connect(error_chain(&e)))?;
        if let Ok(data) = f.into_data() {
            if out.len() + data.len() > limit {
                if truncate {
                    out.extend_from_slice(&data[..limit - out.len()]);
                    return Ok(out);
                }
                return Err(CallError::TooLarge {
                    limit: limit as u64,
                });
            }
            out.extend_from_slice(&data);
        }
    }
    Ok(out)
}

/// The snappy-compressed `ReadRequest` asking for streamed chunks.
fn read_request(
    scheme: &str,
    addr: &str,
    mint: i64,
    maxt: i64,
    matchers: &[Matcher],
) -> Result<hyper::Request<Full<Bytes>>, CallError> {
    use pb::label_matcher::Type;
    let matchers = matchers
        .iter()
        .map(|m| pb::LabelMatcher {
            r#type: match m.op() {
                MatchOp::Equal => Type::Eq,
                MatchOp::NotEqual => Type::Neq,
                MatchOp::Regex => Type::Re,
                MatchOp::NotRegex => Type::Nre,
            } as i32,
            name: m.name().to_string(),
            value: m.value().to_string(),
        })
        .collect();
    let msg = pb::ReadRequest {
        queries: vec![pb::Query {
            start_timestamp_ms: mint,
            end_timestamp_ms: maxt,
            matchers,
            hints: Some(pb::ReadHints {
                start_ms: mint,
                end_ms: maxt,
                ..Default::default()
            }),
        }],
        accepted_response_types: vec![pb::read_request::ResponseType::StreamedXorChunks as i32],
    };
    let body = snap::raw::Encoder::new()
        .compress_vec(&msg.encode_to_vec())
        .map_err(|e| CallError::Decode(e.to_string()))?;
    hyper::Request::post(format!("{scheme}://{addr}/api/v1/read"))
        .header("content-type", "application/x-protobuf")
        .header("content-encoding", "snappy")
        .header("x-prometheus-remote-read-version", "0.1.0")
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| CallError::Connect(e.to_string()))
}

/// The next complete frame of `buf` (uvarint length, big-endian CRC-32C,
/// message), removed from it; `None` until one is complete.
fn next_frame(buf: &mut BytesMut) -> Result<Option<pb::ChunkedReadResponse>, CallError> {
    let Some((len, rest)) = split_uvarint(buf) else {
        if buf.len() > 10 {
            return Err(CallError::Decode("bad frame length".into()));
        }
        return Ok(None);
    };
    if len > MAX_FRAME_BYTES {
        return Err(CallError::TooLarge {
            limit: MAX_FRAME_BYTES,
        });
    }
    let header = buf.len() - rest.len();
    let need = header + 4 + len as usize;
    if buf.len() < need {
        buf.reserve(need - buf.len());
        return Ok(None);
    }
    let frame = buf.split_to(need);
    let (crc, msg) = frame[header..].split_at(4);
    let crc = u32::from_be_bytes([crc[0], crc[1], crc[2], crc[3]]);
    if crc32c::crc32c(msg) != crc {
        return Err(CallError::Decode("frame checksum mismatch".into()));
    }
    pb::ChunkedReadResponse::decode(msg)
        .map(Some)
        .map_err(|e| CallError::Decode(e.to_string()))
}

/// Decodes one streamed series into `out`, appending to the last series
/// when the labels are the same (a series split over frames).
fn decode_series(
    s: pb::ChunkedSeries,
    mint: i64,
    maxt: i64,
    cap: &SampleCap,
    out: &mut Vec<SelectedSeries>,
) -> Result<(), CallError> {
    let mut b = LabelsBuilder::new();
    for l in &s.labels {
        b.push(
            std::str::from_utf8(&l.name).map_err(|e| CallError::Decode(e.to_string()))?,
            std::str::from_utf8(&l.value).map_err(|e| CallError::Decode(e.to_string()))?,
        );
    }
    let labels = b
        .build()
        .map_err(|e| CallError::Decode(format!("series labels: {e}")))?;
    if out.last().is_none_or(|last| last.labels != labels) {
        out.push(SelectedSeries {
            labels,
            ..Default::default()
        });
    }
    let Some(series) = out.last_mut() else {
        return Ok(());
    };
    let in_range = |t: i64| t >= mint && t <= maxt;
    for c in s.chunks {
        match pb::chunk::Encoding::try_from(c.r#type) {
            Ok(pb::chunk::Encoding::Xor) => {
                let mut it = XorIter::new(&c.data[..]);
                let before = series.samples.len();
                for x in it.by_ref() {
                    if in_range(x.t) {
                        series.samples.push(Sample { t: x.t, v: x.v });
                    }
                }
                if let Some(e) = it.err() {
                    return Err(CallError::Decode(format!("XOR chunk: {e}")));
                }
                cap.take(series.samples.len() - before)?;
            }
            Ok(e @ (pb::chunk::Encoding::Histogram | pb::chunk::Encoding::FloatHistogram)) => {
                let enc = if e == pb::chunk::Encoding::Histogram {
                    Encoding::Histogram
                } else {
                    Encoding::FloatHistogram
                };
                let values = decode_histogram_values(enc, &c.data)
                    .map_err(|e| CallError::Decode(format!("histogram chunk: {e}")))?;
                cap.take(values.len())?;
                for (i, (t, h)) in values.into_iter().enumerate() {
                    if !in_range(t) {
                        continue;
                    }
                    let mut f = h.to_float();
                    // As a local chunk reader: the first sample of a chunk
                    // says "unknown" about a reset (unless gauge).
                    if i == 0 && f.counter_reset_hint != CounterResetHint::Gauge {
                        f.counter_reset_hint = CounterResetHint::Unknown;
                    }
                    series.hists.push((t, Arc::new(f)));
                }
            }
            _ => {
                return Err(CallError::Decode(format!(
                    "chunk encoding {} is not XOR or histogram",
                    c.r#type
                )))
            }
        }
    }
    let sorted = |v: &[i64]| v.windows(2).all(|w| w[0] < w[1]);
    if !sorted(&series.samples.iter().map(|s| s.t).collect::<Vec<_>>())
        || !sorted(&series.hists.iter().map(|h| h.0).collect::<Vec<_>>())
    {
        return Err(CallError::Decode(format!(
            "samples of {} are not in time order",
            series.labels
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame_of(msg: &pb::ChunkedReadResponse) -> Vec<u8> {
        let bytes = msg.encode_to_vec();
        let mut out = Vec::new();
        crate::storage::encoding::put_uvarint(&mut out, bytes.len() as u64);
        out.extend_from_slice(&crc32c::crc32c(&bytes).to_be_bytes());
        out.extend_from_slice(&bytes);
        out
    }

    fn xor_chunk(samples: &[(i64, f64)]) -> pb::Chunk {
        let mut app = crate::storage::chunk::XorAppender::new();
        for &(t, v) in samples {
            app.append(t, v);
        }
        pb::Chunk {
            min_time_ms: samples[0].0,
            max_time_ms: samples[samples.len() - 1].0,
            r#type: pb::chunk::Encoding::Xor as i32,
            data: Bytes::from(app.finish().into_vec()),
        }
    }

    fn series(name: &str, chunks: Vec<pb::Chunk>) -> pb::ChunkedSeries {
        pb::ChunkedSeries {
            labels: vec![pb::Label {
                name: Bytes::from_static(b"__name__"),
                value: Bytes::copy_from_slice(name.as_bytes()),
            }],
            chunks,
        }
    }

    #[test]
    fn frames_decode_in_pieces_and_a_split_series_joins() {
        let a = frame_of(&pb::ChunkedReadResponse {
            chunked_series: vec![series("m", vec![xor_chunk(&[(1, 1.0), (2, 2.0)])])],
            query_index: 0,
        });
        let b = frame_of(&pb::ChunkedReadResponse {
            chunked_series: vec![
                series("m", vec![xor_chunk(&[(3, 3.0)])]),
                series("n", vec![xor_chunk(&[(1, 9.0), (50, 9.0)])]),
            ],
            query_index: 0,
        });
        let all = [a, b].concat();
        let cap = SampleCap::new(100);
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        // Byte by byte: a frame is only taken when complete.
        for byte in all {
            buf.extend_from_slice(&[byte]);
            while let Some(msg) = next_frame(&mut buf).unwrap() {
                for s in msg.chunked_series {
                    decode_series(s, 0, 10, &cap, &mut out).unwrap();
                }
            }
        }
        assert!(buf.is_empty());
        assert_eq!(out.len(), 2);
        assert_eq!(
            out[0].samples.iter().map(|s| s.t).collect::<Vec<_>>(),
            vec![1, 2, 3]
        );
        // Out of [0, 10]: dropped.
        assert_eq!(out[1].samples.len(), 1);
    }

    #[test]
    fn oversized_frames_bad_checksums_and_sample_floods_are_refused() {
        let mut buf = BytesMut::new();
        let mut big = Vec::new();
        crate::storage::encoding::put_uvarint(&mut big, MAX_FRAME_BYTES + 1);
        buf.extend_from_slice(&big);
        assert!(matches!(
            next_frame(&mut buf),
            Err(CallError::TooLarge { .. })
        ));

        let mut f = frame_of(&pb::ChunkedReadResponse {
            chunked_series: vec![series("m", vec![xor_chunk(&[(1, 1.0)])])],
            query_index: 0,
        });
        let last = f.len() - 1;
        f[last] ^= 0xff;
        let mut buf = BytesMut::from(&f[..]);
        assert!(matches!(next_frame(&mut buf), Err(CallError::Decode(_))));

        let cap = SampleCap::new(2);
        let mut out = Vec::new();
        let s = series("m", vec![xor_chunk(&[(1, 1.0), (2, 1.0), (3, 1.0)])]);
        assert!(matches!(
            decode_series(s, 0, 10, &cap, &mut out),
            Err(CallError::TooManySamples)
        ));
    }

    #[test]
    fn info_range_overlap_rules() {
        let store = EndpointInfo {
            min_time: Some(100),
            max_time: Some(200),
            writable: false,
            ..Default::default()
        };
        assert!(store.may_overlap(150, 300) && store.may_overlap(0, 100));
        assert!(!store.may_overlap(201, 300) && !store.may_overlap(0, 99));
        let node = EndpointInfo {
            writable: true,
            ..store.clone()
        };
        assert!(node.may_overlap(1000, 2000) && !node.may_overlap(0, 99));
        assert!(EndpointInfo {
            writable: true,
            ..Default::default()
        }
        .may_overlap(0, 1));
        assert!(!EndpointInfo::default().may_overlap(0, 1));
    }
}
