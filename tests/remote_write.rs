//! Remote write over HTTP (in-process router): every error status with its
//! message, partial writes that store exactly the valid samples, idempotent
//! retries, 2.0 written headers, stale markers, metadata and exemplars, and
//! follow-up reads proving what was (not) stored.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use bytes::Bytes;
use http_body_util::BodyExt;
use prost::Message;
use tidemark::api::{router, AppState};
use tidemark::ingest::proto::{prometheus as v1, write_v2 as v2};
use tidemark::ingest::{Receiver, ReceiverOptions, WriteLimits};
use tidemark::model::{Matcher, STALE_NAN};
use tidemark::storage::{Db, Options};
use tower::ServiceExt;

const V1_CT: &str = "application/x-protobuf;proto=prometheus.WriteRequest";
const V2_CT: &str = "application/x-protobuf;proto=io.prometheus.write.v2.Request";

struct Server {
    _dir: tempfile::TempDir,
    db: Arc<Db>,
    receiver: Arc<Receiver>,
    app: axum::Router,
}

fn server_with(opts: ReceiverOptions) -> Server {
    server_with_storage(opts, Options::default())
}

fn server_with_storage(opts: ReceiverOptions, storage: Options) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let db = Arc::new(Db::open(dir.path(), storage).unwrap());
    let state = AppState::new();
    let receiver = Arc::new(Receiver::with_metrics(
        db.clone(),
        opts,
        state.ingest_metrics(),
    ));
    state.set_ready(db.clone(), receiver.clone());
    Server {
        _dir: dir,
        db,
        receiver,
        app: router(state),
    }
}

fn server() -> Server {
    server_with(ReceiverOptions::default())
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

struct Resp {
    status: StatusCode,
    body: String,
    headers: axum::http::HeaderMap,
}

impl Server {
    async fn post_raw(
        &self,
        content_type: Option<&str>,
        encoding: Option<&str>,
        body: Vec<u8>,
    ) -> Resp {
        let mut req = Request::post("/api/v1/write");
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        if let Some(e) = encoding {
            req = req.header("content-encoding", e);
        }
        let resp = self
            .app
            .clone()
            .oneshot(req.body(Body::from(body)).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = String::from_utf8_lossy(&resp.into_body().collect().await.unwrap().to_bytes())
            .into_owned();
        Resp {
            status,
            body,
            headers,
        }
    }

    async fn post(&self, content_type: &str, msg: &impl Message) -> Resp {
        let raw = snap::raw::Encoder::new()
            .compress_vec(&msg.encode_to_vec())
            .unwrap();
        self.post_raw(Some(content_type), Some("snappy"), raw).await
    }

    /// Every stored sample of `metric` as (labels text, t, value bits).
    fn read(&self, metric: &str) -> Vec<(String, i64, u64)> {
        self.db
            .querier(i64::MIN, i64::MAX)
            .select(&[Matcher::eq("__name__", metric)])
            .iter()
            .flat_map(|s| {
                s.samples()
                    .map(move |x| (s.labels().to_string(), x.t, x.v.to_bits()))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    fn total_samples(&self) -> usize {
        self.db.head_stats().samples
    }

    async fn metrics(&self) -> String {
        let resp = self
            .app
            .clone()
            .oneshot(Request::get("/metrics").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8(body.to_vec()).unwrap()
    }
}

fn label(n: &str, v: &str) -> v1::Label {
    v1::Label {
        name: Bytes::copy_from_slice(n.as_bytes()),
        value: Bytes::copy_from_slice(v.as_bytes()),
    }
}

fn ts(labels: &[(&str, &str)], samples: &[(i64, f64)]) -> v1::TimeSeries {
    v1::TimeSeries {
        labels: labels.iter().map(|(n, v)| label(n, v)).collect(),
        samples: samples
            .iter()
            .map(|&(t, v)| v1::Sample {
                value: v,
                timestamp: t,
            })
            .collect(),
        ..Default::default()
    }
}

fn v1_req(series: Vec<v1::TimeSeries>) -> v1::WriteRequest {
    v1::WriteRequest {
        timeseries: series,
        ..Default::default()
    }
}

/// A 2.0 request: `series` are label pairs (resolved into the symbol table)
/// and samples.
/// One 2.0 series for [`v2_req`]: label pairs and samples.
type V2Series<'a> = (&'a [(&'a str, &'a str)], &'a [(i64, f64)]);

fn v2_req(series: &[V2Series<'_>]) -> v2::Request {
    let mut symbols: Vec<String> = vec![String::new()];
    let mut sym = |s: &str| -> u32 {
        if let Some(i) = symbols.iter().position(|x| x == s) {
            return i as u32;
        }
        symbols.push(s.to_string());
        (symbols.len() - 1) as u32
    };
    let timeseries = series
        .iter()
        .map(|(labels, samples)| v2::TimeSeries {
            labels_refs: labels.iter().flat_map(|(n, v)| [sym(n), sym(v)]).collect(),
            samples: samples
                .iter()
                .map(|&(t, v)| v2::Sample {
                    value: v,
                    timestamp: t,
                    start_timestamp: 0,
                })
                .collect(),
            ..Default::default()
        })
        .collect();
    v2::Request {
        symbols: symbols.into_iter().map(Bytes::from).collect(),
        timeseries,
    }
}

#[tokio::test]
async fn v1_write_stores_every_sample_bit_exact() {
    let s = server();
    let t = now_ms();
    let req = v1_req(vec![
        // (prost, like any proto3 encoder that compares with ==, drops -0.0
        // as a default value, so the odd float sent here is a NaN payload.)
        ts(
            &[("__name__", "up"), ("job", "a")],
            &[
                (t - 2000, 1.0),
                (t - 1000, STALE_NAN),
                (t, f64::from_bits(0x7ff8_0000_0000_0001)),
            ],
        ),
        // Unsorted labels are sorted, not rejected.
        ts(&[("job", "b"), ("__name__", "up")], &[(t, 1.0)]),
    ]);
    let r = s.post(V1_CT, &req).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    assert!(
        r.headers
            .get("X-Prometheus-Remote-Write-Samples-Written")
            .is_none(),
        "1.0 answers carry no written headers"
    );
    let got = s.read("up");
    assert_eq!(
        got,
        vec![
            (r#"up{job="a"}"#.into(), t - 2000, 1f64.to_bits()),
            (r#"up{job="a"}"#.into(), t - 1000, STALE_NAN.to_bits()),
            (r#"up{job="a"}"#.into(), t, 0x7ff8_0000_0000_0001),
            (r#"up{job="b"}"#.into(), t, 1f64.to_bits()),
        ]
    );
    // Plain `application/x-protobuf` and a missing Content-Type are 1.0 too.
    let r = s
        .post(
            "application/x-protobuf",
            &v1_req(vec![ts(&[("__name__", "m2")], &[(t, 1.0)])]),
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let raw = snap::raw::Encoder::new()
        .compress_vec(&v1_req(vec![ts(&[("__name__", "m3")], &[(t, 1.0)])]).encode_to_vec())
        .unwrap();
    assert_eq!(
        s.post_raw(None, None, raw).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(s.read("m3").len(), 1);
}

#[tokio::test]
async fn v2_write_resolves_symbols_and_reports_written_counts() {
    let s = server();
    let t = now_ms();
    let req = v2_req(&[
        (
            &[("__name__", "http_requests_total"), ("code", "200")],
            &[(t - 1000, 5.0), (t, 7.0)],
        ),
        (
            &[("__name__", "http_requests_total"), ("code", "500")],
            &[(t, STALE_NAN)],
        ),
    ]);
    let r = s.post(V2_CT, &req).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    assert_eq!(r.headers["X-Prometheus-Remote-Write-Samples-Written"], "3");
    assert_eq!(
        r.headers["X-Prometheus-Remote-Write-Histograms-Written"],
        "0"
    );
    assert_eq!(
        r.headers["X-Prometheus-Remote-Write-Exemplars-Written"],
        "0"
    );
    let got = s.read("http_requests_total");
    assert_eq!(got.len(), 3);
    assert_eq!(
        got[2],
        (
            r#"http_requests_total{code="500"}"#.into(),
            t,
            STALE_NAN.to_bits()
        )
    );
}

#[tokio::test]
async fn unreadable_bodies_store_nothing_and_name_the_problem() {
    let s = server_with(ReceiverOptions {
        max_body_bytes: 4096,
        max_decompressed_bytes: 8192,
        ..Default::default()
    });
    let t = now_ms();
    assert_eq!(
        s.post(
            V1_CT,
            &v1_req(vec![ts(&[("__name__", "base")], &[(t, 1.0)])])
        )
        .await
        .status,
        StatusCode::NO_CONTENT
    );
    let before = s.total_samples();

    let good = snap::raw::Encoder::new()
        .compress_vec(&v1_req(vec![ts(&[("__name__", "x")], &[(t, 1.0)])]).encode_to_vec())
        .unwrap();
    type Case<'a> = (
        Option<&'a str>,
        Option<&'a str>,
        Vec<u8>,
        StatusCode,
        &'a str,
    );
    let cases: Vec<Case<'_>> = vec![
        (
            Some("application/json"),
            None,
            good.clone(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported Content-Type",
        ),
        (
            Some("application/x-protobuf;proto=io.prometheus.write.v9.Request"),
            None,
            good.clone(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "v9",
        ),
        (
            Some(V1_CT),
            Some("gzip"),
            good.clone(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Content-Encoding \"gzip\"",
        ),
        (
            Some(V1_CT),
            Some("snappy"),
            b"\xff\xff\xff\xff\xff".to_vec(),
            StatusCode::BAD_REQUEST,
            "snappy",
        ),
        (
            Some(V1_CT),
            Some("snappy"),
            snap::raw::Encoder::new()
                .compress_vec(b"\x0a\xff\xff")
                .unwrap(),
            StatusCode::BAD_REQUEST,
            "prometheus.WriteRequest protobuf",
        ),
        (
            Some(V2_CT),
            Some("snappy"),
            snap::raw::Encoder::new()
                .compress_vec(b"\x22\x05ab")
                .unwrap(),
            StatusCode::BAD_REQUEST,
            "io.prometheus.write.v2.Request protobuf",
        ),
        (
            Some(V1_CT),
            Some("snappy"),
            vec![0u8; 5000],
            StatusCode::PAYLOAD_TOO_LARGE,
            "larger than the limit of 4096 bytes",
        ),
        (
            Some(V1_CT),
            Some("snappy"),
            snap::raw::Encoder::new()
                .compress_vec(&[0u8; 9000])
                .unwrap(),
            StatusCode::BAD_REQUEST,
            "exceeds the limit of 8192 bytes",
        ),
    ];
    for (ct, enc, body, status, needle) in cases {
        let r = s.post_raw(ct, enc, body).await;
        assert_eq!(r.status, status, "{ct:?} {enc:?}: {}", r.body);
        assert!(
            r.body.contains(needle),
            "{ct:?}: body {:?} lacks {needle:?}",
            r.body
        );
    }
    assert_eq!(
        s.total_samples(),
        before,
        "nothing stored by unreadable requests"
    );
    assert_eq!(s.read("base").len(), 1, "earlier data intact");
}

#[tokio::test]
async fn partial_write_v1_stores_exactly_the_valid_samples() {
    let s = server();
    let t = now_ms();
    assert_eq!(
        s.post(
            V1_CT,
            &v1_req(vec![ts(&[("__name__", "pre"), ("i", "1")], &[(t, 1.0)])])
        )
        .await
        .status,
        StatusCode::NO_CONTENT
    );
    let mut bad_utf8 = ts(&[("__name__", "bad_utf8")], &[(t, 1.0)]);
    bad_utf8.labels.push(v1::Label {
        name: Bytes::from_static(b"l"),
        value: Bytes::from_static(b"\xff\xfe"),
    });
    let req = v1_req(vec![
        ts(
            &[("__name__", "ok"), ("i", "1")],
            &[(t - 1000, 1.0), (t, 2.0)],
        ),
        ts(&[("job", "no_name")], &[(t, 1.0)]),
        ts(&[("__name__", "")], &[(t, 1.0)]),
        ts(&[("__name__", "dup"), ("a", "1"), ("a", "2")], &[(t, 1.0)]),
        ts(&[("__name__", "emptyname"), ("", "x")], &[(t, 1.0)]),
        bad_utf8,
        // Against the stored sample at t: out of order, different duplicate, identical duplicate.
        ts(&[("__name__", "pre"), ("i", "1")], &[(t - 5000, 1.0)]),
        ts(&[("__name__", "pre"), ("i", "1")], &[(t, 9.0)]),
        ts(&[("__name__", "pre"), ("i", "1")], &[(t, 1.0)]),
        ts(&[("__name__", "future")], &[(t + 11 * 60 * 1000, 1.0)]),
        ts(&[("__name__", "too_old")], &[(t - 2 * 3_600_000, 1.0)]),
        ts(&[("__name__", "ok"), ("i", "2")], &[(t, 3.0)]),
    ]);
    let r = s.post(V1_CT, &req).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    for needle in [
        "stored 4 of 13 samples",
        "rejected 9",
        "missing_metric_name=2",
        "duplicate_label_name=1",
        "invalid_label_name=1",
        "invalid_utf8=1",
        "out_of_order=1",
        "duplicate_timestamp=1",
        "too_far_in_future=1",
        "too_old=1",
        "first offenders:",
        r#"{job="no_name"}"#,
    ] {
        assert!(
            r.body.contains(needle),
            "body lacks {needle:?}:\n{}",
            r.body
        );
    }
    let ok: Vec<_> = s.read("ok").into_iter().map(|x| (x.0, x.1)).collect();
    assert_eq!(
        ok,
        vec![
            (r#"ok{i="1"}"#.into(), t - 1000),
            (r#"ok{i="1"}"#.into(), t),
            (r#"ok{i="2"}"#.into(), t)
        ]
    );
    assert_eq!(
        s.read("pre"),
        vec![(r#"pre{i="1"}"#.into(), t, 1f64.to_bits())],
        "stored sample unchanged"
    );
    for gone in ["dup", "emptyname", "bad_utf8", "future", "too_old"] {
        assert!(s.read(gone).is_empty(), "{gone} stored");
    }
}

#[tokio::test]
async fn partial_write_v2_bad_symbol_refs_and_headers() {
    let s = server();
    let t = now_ms();
    let mut req = v2_req(&[
        (&[("__name__", "good")], &[(t, 1.0)]),
        (&[("__name__", "bad")], &[(t, 1.0), (t + 1, 1.0)]),
    ]);
    req.timeseries[1].labels_refs[1] = 999;
    req.timeseries.push(v2::TimeSeries {
        labels_refs: vec![1],
        samples: vec![v2::Sample {
            value: 1.0,
            timestamp: t,
            start_timestamp: 0,
        }],
        ..Default::default()
    });
    let r = s.post(V2_CT, &req).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.body.contains("invalid_symbol_ref=3"), "{}", r.body);
    assert!(
        r.body.contains("symbol reference 999 is out of range"),
        "{}",
        r.body
    );
    assert!(r.body.contains("odd length"), "{}", r.body);
    assert_eq!(
        r.headers["X-Prometheus-Remote-Write-Samples-Written"], "1",
        "headers on failure too"
    );
    assert_eq!(s.read("good").len(), 1);
}

#[tokio::test]
async fn resent_batch_is_idempotent() {
    let s = server();
    let t = now_ms();
    let req = v1_req(
        (0..50)
            .map(|i| {
                ts(
                    &[("__name__", "retry"), ("i", &i.to_string())],
                    &[(t - 1000, i as f64), (t, STALE_NAN)],
                )
            })
            .collect(),
    );
    for _ in 0..3 {
        let r = s.post(V1_CT, &req).await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    }
    assert_eq!(s.read("retry").len(), 100);
    let req2 = v2_req(&[(&[("__name__", "retry2")], &[(t, 1.0)])]);
    for _ in 0..2 {
        let r = s.post(V2_CT, &req2).await;
        assert_eq!(r.status, StatusCode::NO_CONTENT);
        assert_eq!(r.headers["X-Prometheus-Remote-Write-Samples-Written"], "1");
    }
}

/// A 1.0 integer histogram: schema 0, buckets 0 and 1 with absolute
/// counts `a` and `b`, one observation in the zero bucket.
fn v1_hist(t: i64, a: i64, b: i64) -> v1::Histogram {
    v1::Histogram {
        timestamp: t,
        count: Some(v1::histogram::Count::CountInt((a + b + 1) as u64)),
        zero_count: Some(v1::histogram::ZeroCount::ZeroCountInt(1)),
        zero_threshold: 2f64.powi(-128),
        sum: (a + b) as f64 * 1.25,
        schema: 0,
        positive_spans: vec![v1::BucketSpan {
            offset: 0,
            length: 2,
        }],
        positive_deltas: vec![a, b - a],
        ..Default::default()
    }
}

impl Server {
    /// Every stored histogram of `metric` as (t, count, sum, positive buckets).
    fn read_histograms(&self, metric: &str) -> Vec<(i64, f64, f64, Vec<f64>)> {
        self.db
            .querier(i64::MIN, i64::MAX)
            .select(&[Matcher::eq("__name__", metric)])
            .iter()
            .flat_map(|s| {
                s.histograms()
                    .map(|(t, h)| (t, h.count, h.sum, h.positive_buckets))
                    .collect::<Vec<_>>()
            })
            .collect()
    }
}

#[tokio::test]
async fn v1_native_histograms_are_stored_with_float_samples() {
    let s = server();
    let t = now_ms() - 60_000;
    let mut series = ts(&[("__name__", "mixed")], &[(t, 1.0)]);
    series.histograms = (1..=3)
        .map(|i| v1_hist(t + i * 1000, 2 * i, 3 * i))
        .collect();
    // A float histogram too (count_float): stored in its own encoding.
    let mut fh = v1::Histogram {
        timestamp: t + 4000,
        count: Some(v1::histogram::Count::CountFloat(20.5)),
        zero_count: Some(v1::histogram::ZeroCount::ZeroCountFloat(0.5)),
        sum: 7.0,
        schema: 0,
        positive_spans: vec![v1::BucketSpan {
            offset: 0,
            length: 2,
        }],
        positive_counts: vec![10.0, 10.0],
        ..Default::default()
    };
    series.histograms.push(fh.clone());
    let r = s.post(V1_CT, &v1_req(vec![series])).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    assert_eq!(s.read("mixed").len(), 1);
    let got = s.read_histograms("mixed");
    assert_eq!(
        got,
        vec![
            (t + 1000, 6.0, 6.25, vec![2.0, 3.0]),
            (t + 2000, 11.0, 12.5, vec![4.0, 6.0]),
            (t + 3000, 16.0, 18.75, vec![6.0, 9.0]),
            (t + 4000, 20.5, 7.0, vec![10.0, 10.0]),
        ]
    );
    // Resending the same request is idempotent.
    fh.timestamp = t + 4000;
    let mut again = ts(&[("__name__", "mixed")], &[(t, 1.0)]);
    again.histograms = vec![v1_hist(t + 3000, 6, 9), fh];
    let r = s.post(V1_CT, &v1_req(vec![again])).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    assert_eq!(s.read_histograms("mixed").len(), 4);
}

#[tokio::test]
async fn invalid_histograms_are_typed_per_sample_errors_in_the_partial_write() {
    let s = server();
    let t = now_ms() - 60_000;
    let mut series = ts(&[("__name__", "h1")], &[(t, 1.0)]);
    let mut mismatch = v1_hist(t + 1000, 1, 2);
    mismatch.positive_deltas.push(1);
    let mut negative = v1_hist(t + 2000, 1, 2);
    negative.positive_deltas = vec![1, -5];
    let mut schema = v1_hist(t + 3000, 1, 2);
    schema.schema = 9;
    series.histograms = vec![mismatch, v1_hist(t + 1500, 1, 2), negative, schema];
    let r = s.post(V1_CT, &v1_req(vec![series])).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(
        r.body.contains("stored 2 of 5 samples; rejected 3"),
        "{}",
        r.body
    );
    assert!(r.body.contains("invalid_histogram=3"), "{}", r.body);
    assert!(
        r.body.contains("spans need 2 buckets, have 3 buckets"),
        "{}",
        r.body
    );
    assert_eq!(s.read_histograms("h1").len(), 1);
    // Storage's own rejections (out of order) name the histogram too.
    let mut late = ts(&[("__name__", "h1")], &[]);
    late.histograms = vec![v1_hist(t + 500, 1, 2)];
    let r = s.post(V1_CT, &v1_req(vec![late])).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.body.contains("out_of_order=1"), "{}", r.body);
}

#[tokio::test]
async fn v2_histograms_with_custom_buckets_and_written_headers() {
    let s = server();
    let t = now_ms() - 60_000;
    let mut req = v2_req(&[(&[("__name__", "h2")], &[(t, 5.0)])]);
    let nhcb = |ts: i64, a: i64| v2::Histogram {
        timestamp: ts,
        count: Some(v2::histogram::Count::CountInt(a as u64 + 1)),
        sum: a as f64,
        schema: -53,
        positive_spans: vec![v2::BucketSpan {
            offset: 0,
            length: 2,
        }],
        positive_deltas: vec![a, 1 - a],
        custom_values: vec![0.5],
        ..Default::default()
    };
    req.timeseries[0].histograms = vec![nhcb(t + 1000, 2), nhcb(t + 2000, 3)];
    // An exemplar on the histogram series is kept too.
    req.symbols.push(Bytes::from_static(b"trace_id"));
    req.symbols.push(Bytes::from_static(b"abc"));
    let n = req.symbols.len() as u32;
    req.timeseries[0].exemplars.push(v2::Exemplar {
        labels_refs: vec![n - 2, n - 1],
        value: 0.7,
        timestamp: t + 2000,
    });
    let r = s.post(V2_CT, &req).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    assert_eq!(r.headers["X-Prometheus-Remote-Write-Samples-Written"], "1");
    assert_eq!(
        r.headers["X-Prometheus-Remote-Write-Histograms-Written"],
        "2"
    );
    assert_eq!(
        r.headers["X-Prometheus-Remote-Write-Exemplars-Written"],
        "1"
    );
    let ex = s
        .receiver
        .exemplars()
        .select(&[Matcher::eq("__name__", "h2")], t, t + 3000);
    assert_eq!(ex.len(), 1);
    assert_eq!(ex[0].labels.get("trace_id"), Some("abc"));
    req.timeseries[0].exemplars.clear();
    let q = s.db.querier(i64::MIN, i64::MAX);
    let series = q.select(&[Matcher::eq("__name__", "h2")]);
    let hs: Vec<_> = series[0].histograms().collect();
    assert_eq!(hs.len(), 2);
    assert_eq!(hs[1].1.schema, -53);
    assert_eq!(hs[1].1.custom_values, vec![0.5]);
    assert_eq!(hs[1].1.positive_buckets, vec![3.0, 1.0]);

    // Custom values on an exponential schema are refused, the rest stored.
    let mut bad = nhcb(t + 3000, 4);
    bad.schema = 0;
    req.timeseries[0].samples.clear();
    req.timeseries[0].histograms = vec![bad, nhcb(t + 4000, 4)];
    let r = s.post(V2_CT, &req).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        r.headers["X-Prometheus-Remote-Write-Histograms-Written"],
        "1"
    );
    assert!(r.body.contains("invalid_histogram=1"), "{}", r.body);
    assert!(r.body.contains("must not have custom bounds"), "{}", r.body);
}

#[tokio::test]
async fn metadata_and_exemplars_are_kept() {
    let s = server();
    let t = now_ms();
    let mut series = ts(&[("__name__", "req_total"), ("job", "a")], &[(t, 1.0)]);
    series.exemplars.push(v1::Exemplar {
        labels: vec![label("trace_id", "abc123")],
        value: 1.0,
        timestamp: t,
    });
    let mut req = v1_req(vec![series]);
    req.metadata.push(v1::MetricMetadata {
        r#type: 1,
        metric_family_name: "req_total".into(),
        help: "Requests.".into(),
        unit: String::new(),
    });
    assert_eq!(s.post(V1_CT, &req).await.status, StatusCode::NO_CONTENT);
    let md = s.receiver.metadata().get(Some("req_total"), 0);
    assert_eq!(
        (md[0].metric_type, md[0].help.as_str()),
        ("counter", "Requests.")
    );
    let ex = s
        .receiver
        .exemplars()
        .select(&[Matcher::eq("job", "a")], t, t);
    assert_eq!(ex.len(), 1);
    assert_eq!(ex[0].labels.get("trace_id"), Some("abc123"));

    let mut req = v2_req(&[(&[("__name__", "g2")], &[(t, 1.0)])]);
    req.symbols.push(Bytes::from_static(b"A gauge."));
    req.symbols.push(Bytes::from_static(b"seconds"));
    let n = req.symbols.len() as u32;
    req.timeseries[0].metadata = Some(v2::Metadata {
        r#type: 2,
        help_ref: n - 2,
        unit_ref: n - 1,
    });
    req.timeseries[0].exemplars.push(v2::Exemplar {
        labels_refs: vec![],
        value: 2.0,
        timestamp: t,
    });
    let r = s.post(V2_CT, &req).await;
    assert_eq!(
        r.headers["X-Prometheus-Remote-Write-Exemplars-Written"],
        "1"
    );
    let md = s.receiver.metadata().get(Some("g2"), 0);
    assert_eq!(
        (md[0].metric_type, md[0].help.as_str(), md[0].unit.as_str()),
        ("gauge", "A gauge.", "seconds")
    );
}

#[tokio::test]
async fn unavailable_storage_is_503_retryable() {
    // Not ready yet: WAL replay in progress.
    let app = router(AppState::new());
    let raw = snap::raw::Encoder::new()
        .compress_vec(&v1_req(vec![]).encode_to_vec())
        .unwrap();
    let resp = app
        .oneshot(
            Request::post("/api/v1/write")
                .header("content-type", V1_CT)
                .body(Body::from(raw))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);

    // Closed storage (shutting down).
    let s = server();
    s.db.close().unwrap();
    let r = s
        .post(
            V1_CT,
            &v1_req(vec![ts(&[("__name__", "late")], &[(now_ms(), 1.0)])]),
        )
        .await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.body);
    assert!(r.body.contains("storage"), "{}", r.body);
    assert_eq!(r.headers["Retry-After"], "1");
}

#[tokio::test]
async fn self_metrics_count_requests_samples_and_rejections() {
    let s = server();
    let t = now_ms();
    let ok = v1_req(vec![ts(
        &[("__name__", "a"), ("i", "1")],
        &[(t - 1000, 1.0), (t, 2.0)],
    )]);
    assert_eq!(s.post(V1_CT, &ok).await.status, StatusCode::NO_CONTENT);
    let bad = v1_req(vec![
        ts(&[("__name__", "a"), ("i", "1")], &[(t - 500, 1.0)]),
        ts(&[("job", "x")], &[(t, 1.0)]),
    ]);
    assert_eq!(s.post(V1_CT, &bad).await.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        s.post(V2_CT, &v2_req(&[(&[("__name__", "b")], &[(t, 1.0)])]))
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        s.post_raw(Some("text/plain"), None, vec![]).await.status,
        StatusCode::UNSUPPORTED_MEDIA_TYPE
    );
    let mut hist = ts(&[("__name__", "h")], &[]);
    let mut bad = v1_hist(t - 200, 1, 1);
    bad.positive_deltas.clear();
    hist.histograms = vec![v1_hist(t - 300, 1, 1), bad, v1_hist(t - 100, 1, 2)];
    assert_eq!(
        s.post(V1_CT, &v1_req(vec![hist])).await.status,
        StatusCode::BAD_REQUEST
    );

    let resp = s
        .app
        .clone()
        .oneshot(Request::get("/metrics").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let text = String::from_utf8(
        resp.into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec(),
    )
    .unwrap();
    for line in [
        r#"tidemark_remote_write_requests_total{version="1.0",code="204"} 1"#,
        r#"tidemark_remote_write_requests_total{version="1.0",code="400"} 2"#,
        r#"tidemark_remote_write_requests_total{version="2.0",code="204"} 1"#,
        r#"tidemark_remote_write_requests_total{version="unknown",code="415"} 1"#,
        r#"tidemark_remote_write_samples_received_total{version="1.0"} 4"#,
        "tidemark_remote_write_histograms_received_total 3",
        "tidemark_remote_write_histograms_stored_total 2",
        "tidemark_remote_write_histograms_rejected_total 1",
        r#"tidemark_remote_write_samples_rejected_total{reason="invalid_histogram"} 1"#,
        r#"tidemark_remote_write_samples_received_total{version="2.0"} 1"#,
        "tidemark_remote_write_samples_stored_total 3",
        r#"tidemark_remote_write_samples_rejected_total{reason="out_of_order"} 1"#,
        r#"tidemark_remote_write_samples_rejected_total{reason="missing_metric_name"} 1"#,
        r#"tidemark_remote_write_samples_rejected_total{reason="too_old"} 0"#,
        "tidemark_head_series 3",
        r#"tidemark_build_info{version="#,
    ] {
        assert!(
            text.lines().any(|l| l.starts_with(line)),
            "/metrics lacks {line:?}:\n{text}"
        );
    }
    assert!(text.contains("tidemark_remote_write_request_duration_seconds_bucket"));
    assert!(text.contains("tidemark_remote_write_decode_duration_seconds_count{version=\"1.0\"} 3"));
    let wal: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("tidemark_wal_size_bytes "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(wal > 0.0);
}

/// Small limits for the limit tests below.
fn limited() -> Server {
    server_with(ReceiverOptions {
        limits: WriteLimits {
            max_samples_per_request: 10,
            max_series_per_request: 4,
            max_labels_per_request: 40,
            max_exemplars_per_request: 2,
            max_metadata_per_request: 2,
            max_labels_per_series: 5,
            max_label_name_len: 10,
            max_label_value_len: 20,
            max_exemplar_labels_len: 16,
            max_metadata_text_len: 12,
        },
        ..Default::default()
    })
}

fn metadata(name: &str, help: &str) -> v1::MetricMetadata {
    v1::MetricMetadata {
        r#type: 1,
        metric_family_name: name.into(),
        help: help.into(),
        unit: String::new(),
    }
}

/// Requests over a whole-request limit (empty samples and series counted,
/// on the in-place 1.0 path, the prost 1.0 path and 2.0) are 400 naming the
/// limit and its flag, and store nothing.
#[tokio::test]
async fn whole_request_limits_are_400_naming_the_flag() {
    let s = limited();
    let t = now_ms();
    // Empty `Sample {}` messages (t = 0, v = 0 encode as nothing).
    let empty = || ts(&[("__name__", "e")], &[(0, 0.0); 11]);
    let with_md = |mut r: v1::WriteRequest| {
        r.metadata.push(metadata("e", "E."));
        r
    };
    let mut exemplars = ts(&[("__name__", "x")], &[(t, 1.0)]);
    for _ in 0..3 {
        exemplars.exemplars.push(v1::Exemplar::default());
    }
    let wide = |i: usize| {
        let v = i.to_string();
        ts(
            &[
                ("__name__", "w"),
                ("a", &v),
                ("b", "1"),
                ("c", "1"),
                ("d", "1"),
                ("e", "1"),
                ("f", "1"),
                ("g", "1"),
                ("h", "1"),
                ("i", "1"),
                ("j", "1"),
            ],
            &[(t, 1.0)],
        )
    };
    let cases: Vec<(&str, v1::WriteRequest, &str)> = vec![
        (
            "empty samples, in place",
            v1_req(vec![empty()]),
            "--max-write-samples-per-request",
        ),
        (
            "empty samples, prost",
            with_md(v1_req(vec![empty()])),
            "--max-write-samples-per-request",
        ),
        (
            "empty series",
            v1_req(vec![v1::TimeSeries::default(); 5]),
            "--max-write-series-per-request",
        ),
        (
            "label pairs",
            v1_req(vec![wide(0), wide(1), wide(2), wide(3)]),
            "--max-write-labels-per-request",
        ),
        (
            "exemplars",
            v1_req(vec![exemplars]),
            "--max-write-exemplars-per-request",
        ),
        (
            "metadata",
            v1::WriteRequest {
                metadata: vec![metadata("a", ""), metadata("b", ""), metadata("c", "")],
                ..Default::default()
            },
            "--max-write-metadata-per-request",
        ),
    ];
    for (what, req, flag) in cases {
        let r = s.post(V1_CT, &req).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{what}: {}", r.body);
        assert!(r.body.contains(flag), "{what}: {}", r.body);
        assert!(
            r.body.contains("request has more than"),
            "{what}: {}",
            r.body
        );
        assert_eq!(s.total_samples(), 0, "{what}");
    }
    let samples = [(0, 0.0); 11];
    let v2_cases: Vec<(&str, v2::Request, &str)> = vec![
        (
            "2.0 empty samples",
            v2_req(&[(&[("__name__", "e")], &samples)]),
            "--max-write-samples-per-request",
        ),
        (
            "2.0 empty series",
            v2::Request {
                symbols: vec![],
                timeseries: vec![v2::TimeSeries::default(); 5],
            },
            "--max-write-series-per-request",
        ),
        (
            "2.0 symbols",
            v2::Request {
                symbols: vec![Bytes::new(); 41],
                timeseries: vec![],
            },
            "--max-write-labels-per-request",
        ),
    ];
    for (what, req, flag) in v2_cases {
        let r = s.post(V2_CT, &req).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{what}: {}", r.body);
        assert!(r.body.contains(flag), "{what}: {}", r.body);
        assert_eq!(s.total_samples(), 0, "{what}");
    }
}

/// Per-series limits reject just the offending series (partial write, 400
/// naming reason, limit and flag); the rest is stored. 1.0 and 2.0.
#[tokio::test]
async fn per_series_limits_reject_only_that_series() {
    let s = limited();
    let t = now_ms();
    let long_value = "v".repeat(21);
    let series: [&[(&str, &str)]; 4] = [
        &[("__name__", "ok"), ("job", "a")],
        &[
            ("__name__", "many"),
            ("a", "1"),
            ("b", "1"),
            ("c", "1"),
            ("d", "1"),
            ("e", "1"),
        ],
        &[("__name__", "name"), ("abcdefghijk", "1")],
        &[("__name__", "value"), ("job", &long_value)],
    ];
    let want = [
        ("too_many_labels=1", "--max-labels-per-timeseries"),
        ("label_name_too_long=1", "--max-label-name-len"),
        ("label_value_too_long=1", "--max-label-value-len"),
    ];
    let r = s
        .post(
            V1_CT,
            &v1_req(series.iter().map(|l| ts(l, &[(t, 1.0)])).collect()),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    for (reason, flag) in want {
        assert!(r.body.contains(reason), "{}", r.body);
        assert!(r.body.contains(flag), "{}", r.body);
    }
    assert_eq!(s.read("ok").len(), 1);
    assert_eq!(s.total_samples(), 1);
    let one = [(t + 1, 2.0)];
    let v2: Vec<V2Series<'_>> = series.iter().map(|l| (*l, &one[..])).collect();
    let r = s.post(V2_CT, &v2_req(&v2)).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    for (reason, flag) in want {
        assert!(r.body.contains(reason), "{}", r.body);
        assert!(r.body.contains(flag), "{}", r.body);
    }
    assert_eq!(s.total_samples(), 2);
}

/// An exemplar with over-long labels and metadata with an over-long help
/// are dropped and counted, and the samples beside them stored: 204
/// (issue 22; this was a 400 partial write naming them before). A huge
/// label value does not come back whole in the answer.
#[tokio::test]
async fn oversized_exemplars_and_metadata_are_dropped_and_counted() {
    let s = limited();
    let t = now_ms();
    let mut series = ts(&[("__name__", "x")], &[(t, 1.0)]);
    series.exemplars.push(v1::Exemplar {
        labels: vec![label("trace_id", "0123456789abcdef")],
        value: 1.0,
        timestamp: t,
    });
    let mut req = v1_req(vec![series]);
    req.metadata.push(metadata("x", "A help text too long."));
    let r = s.post(V1_CT, &req).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    assert_eq!(s.total_samples(), 1);
    assert!(s.receiver.metadata().is_empty());
    assert!(s.receiver.exemplars().is_empty());
    let text = s.metrics().await;
    for line in [
        r#"tidemark_remote_write_exemplars_dropped_total{reason="labels_too_long"} 1"#,
        r#"tidemark_remote_write_metadata_dropped_total{reason="too_long"} 1"#,
        r#"tidemark_remote_write_samples_rejected_total{reason="exemplar_labels_too_long"} 1"#,
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "/metrics lacks {line:?}:\n{text}"
        );
    }

    // A 1 MB label value: rejected, and cut in the answer.
    let huge = "v".repeat(1 << 20);
    let r = s
        .post(
            V1_CT,
            &v1_req(vec![ts(&[("__name__", "h"), ("a", &huge)], &[(t, 1.0)])]),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let start: String = r.body.chars().take(300).collect();
    assert!(r.body.contains("label_value_too_long=1"), "{start}");
    assert!(r.body.len() < 4096, "answer of {} bytes", r.body.len());
}

/// The head's stores are bounded: a ring of 3 exemplars keeps the newest 3,
/// an exemplar older than its series' newest is out of order, metadata of a
/// second family or past the byte bound is dropped. Each drop is counted by
/// reason and none fails the request: the sample is stored, 204.
#[tokio::test]
async fn store_bounds_drop_and_count_exemplars_and_metadata_never_samples() {
    let s = server_with_storage(
        ReceiverOptions::default(),
        Options {
            max_exemplars: 3,
            max_metadata_families: 1,
            max_metadata_bytes: 30,
            ..Options::default()
        },
    );
    let t = now_ms();
    let mut series = ts(&[("__name__", "x")], &[(t, 1.0)]);
    let exemplar = |id: &str, dt: i64| v1::Exemplar {
        labels: vec![label("trace_id", id)],
        value: 1.0,
        timestamp: t + dt,
    };
    for k in 0..5 {
        series
            .exemplars
            .push(exemplar(&format!("t{k}"), k * 1000 - 5000));
    }
    series.exemplars.push(exemplar("old", -10_000));
    let mut req = v1_req(vec![series]);
    req.metadata.push(metadata("x", "X."));
    req.metadata.push(metadata("y", "Y."));
    req.metadata.push(metadata("x", &"h".repeat(40)));
    let r = s.post(V1_CT, &req).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    assert_eq!(s.total_samples(), 1);
    let kept: Vec<String> = s
        .receiver
        .exemplars()
        .select(&[], i64::MIN, i64::MAX)
        .iter()
        .map(|e| e.labels.get("trace_id").unwrap_or("").to_string())
        .collect();
    assert_eq!(kept, ["t2", "t3", "t4"]);
    let md = s.receiver.metadata().get(None, 0);
    assert_eq!(md.len(), 1);
    assert_eq!((md[0].metric.as_str(), md[0].help.as_str()), ("x", "X."));

    // The 2.0 answer counts exemplars stored, resends included.
    let mut req = v2_req(&[(&[("__name__", "x")], &[(t + 1000, 2.0)])]);
    req.symbols.push(Bytes::from_static(b"trace_id"));
    req.symbols.push(Bytes::from_static(b"t5"));
    let n = req.symbols.len() as u32;
    for timestamp in [t + 1000, t + 1000, t - 1] {
        req.timeseries[0].exemplars.push(v2::Exemplar {
            labels_refs: vec![n - 2, n - 1],
            value: 2.0,
            timestamp,
        });
    }
    let r = s.post(V2_CT, &req).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    assert_eq!(
        r.headers["X-Prometheus-Remote-Write-Exemplars-Written"],
        "2"
    );

    let text = s.metrics().await;
    for line in [
        r#"tidemark_remote_write_exemplars_dropped_total{reason="out_of_order"} 2"#,
        r#"tidemark_remote_write_exemplars_dropped_total{reason="labels_too_long"} 0"#,
        r#"tidemark_remote_write_metadata_dropped_total{reason="families_limit"} 1"#,
        r#"tidemark_remote_write_metadata_dropped_total{reason="bytes_limit"} 1"#,
        "tidemark_head_exemplars 3",
        "tidemark_head_metadata_families 1",
        "tidemark_head_metadata_bytes 3",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "/metrics lacks {line:?}:\n{text}"
        );
    }
}

impl Server {
    /// `increase(metric[5m])` at `t` (ms): the single result's value.
    async fn increase_5m(&self, metric: &str, t: i64) -> f64 {
        let uri = format!(
            "/api/v1/query?query=increase%28{metric}%5B5m%5D%29&time={}",
            t / 1000
        );
        let resp = self
            .app
            .clone()
            .oneshot(Request::get(uri).body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let result = v["data"]["result"].as_array().unwrap();
        assert_eq!(result.len(), 1, "{v}");
        result[0]["value"][1].as_str().unwrap().parse().unwrap()
    }
}

/// Remote write 2.0 `start_timestamp` (and the earlier draft's series-level
/// `created_timestamp`) with
/// `--enable-created-timestamp-zero-ingestion`: a counter restarted 150 s
/// before the query time gets a zero sample at its created time, so
/// `increase` counts from zero (no extrapolation to the window's start:
/// Prometheus stops at the zero). Each sample comes in its own request (as
/// scrapes are sent); the later requests' created timestamps are not newer
/// than the series' newest sample and are skipped silently (204, nothing
/// rejected). With the flag off the created timestamps are ignored.
#[tokio::test]
async fn v2_created_timestamp_zero_makes_increase_count_from_zero() {
    let at = now_ms() / 1000 * 1000;
    let s_on = server_with(ReceiverOptions {
        created_timestamp_zero_ingestion: true,
        ..ReceiverOptions::default()
    });
    // The same, sent with the series-level `created_timestamp` of the
    // earlier 2.0 draft.
    let s_legacy = server_with(ReceiverOptions {
        created_timestamp_zero_ingestion: true,
        ..ReceiverOptions::default()
    });
    let s_off = server();
    // First process: created at -660 s; restarted process: created -150 s.
    let points = [
        (-660, -600, 100.0),
        (-660, -540, 110.0),
        (-150, -120, 5.0),
        (-150, -60, 8.0),
        (-150, 0, 12.0),
    ];
    for s in [&s_on, &s_legacy, &s_off] {
        for &(ct, t, v) in &points {
            let mut req = v2_req(&[(&[("__name__", "ct_total")], &[(at + t * 1000, v)])]);
            if std::ptr::eq(s, &s_legacy) {
                req.timeseries[0].created_timestamp = at + ct * 1000;
            } else {
                req.timeseries[0].samples[0].start_timestamp = at + ct * 1000;
            }
            let r = s.post(V2_CT, &req).await;
            assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
            assert_eq!(r.headers["X-Prometheus-Remote-Write-Samples-Written"], "1");
        }
        // A resend: the created timestamp and the sample are old news.
        let mut req = v2_req(&[(&[("__name__", "ct_total")], &[(at, 12.0)])]);
        req.timeseries[0].samples[0].start_timestamp = at - 150_000;
        let r = s.post(V2_CT, &req).await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    }
    let times = |s: &Server| -> Vec<(i64, f64)> {
        s.read("ct_total")
            .into_iter()
            .map(|(_, t, v)| ((t - at) / 1000, f64::from_bits(v)))
            .collect()
    };
    assert_eq!(
        times(&s_on),
        [
            (-660, 0.0),
            (-600, 100.0),
            (-540, 110.0),
            (-150, 0.0),
            (-120, 5.0),
            (-60, 8.0),
            (0, 12.0)
        ]
    );
    assert_eq!(times(&s_legacy), times(&s_on));
    // The two zero samples are counted; none with the flag off.
    for (s, zeros) in [(&s_on, 2), (&s_legacy, 2), (&s_off, 0)] {
        let text = s.metrics().await;
        let line = format!("tidemark_created_timestamp_zero_samples_total {zeros}");
        assert!(
            text.lines().any(|l| l == line),
            "/metrics lacks {line:?}:\n{text}"
        );
    }
    // 0 → 12 inside the window, nothing extrapolated.
    assert_eq!(s_on.increase_5m("ct_total", at).await, 12.0);
    assert_eq!(s_legacy.increase_5m("ct_total", at).await, 12.0);
    assert_eq!(times(&s_off).len(), 5);
    // 5 → 12 over 120 s, extrapolated by half a sample interval (30 s)
    // towards the window start: 7 × 150 / 120.
    assert_eq!(s_off.increase_5m("ct_total", at).await, 8.75);
}
