//! Remote read over HTTP (in-process): SAMPLES and STREAMED_XOR_CHUNKS
//! responses carry exactly the stored samples of the matching series in the
//! range; bad bodies are 400s.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use bytes::Bytes;
use http_body_util::BodyExt;
use prost::Message;
use tidemark::api::{router, ApiOptions, AppState};
use tidemark::ingest::proto::prometheus as pb;
use tidemark::ingest::{ReadLimits, Receiver, ReceiverOptions};
use tidemark::model::{Labels, Sample, STALE_NAN};
use tidemark::storage::chunk::XorIter;
use tidemark::storage::encoding::Decbuf;
use tidemark::storage::{Db, Options, SeriesSamples};
use tower::ServiceExt;

fn setup() -> (tempfile::TempDir, Arc<Db>, axum::Router) {
    setup_with(ReadLimits::default(), ApiOptions::default())
}

fn setup_with(read: ReadLimits, api: ApiOptions) -> (tempfile::TempDir, Arc<Db>, axum::Router) {
    let dir = tempfile::tempdir().unwrap();
    let db = Arc::new(Db::open(dir.path(), Options::default()).unwrap());
    let batch: Vec<SeriesSamples> = (0..3)
        .map(|i| SeriesSamples {
            created: Vec::new(),
            histograms: Vec::new(),
            labels: Labels::try_from_pairs([("__name__", "rr".to_string()), ("i", i.to_string())])
                .unwrap(),
            samples: (0..300)
                .map(|k| {
                    Sample::new(
                        1_000_000 + k * 1000,
                        if k == 150 {
                            STALE_NAN
                        } else {
                            (k * (i + 1)) as f64
                        },
                    )
                })
                .collect(),
        })
        .collect();
    assert!(db.append(&batch).unwrap().is_complete());
    let state = AppState::with_options(api);
    let opts = ReceiverOptions {
        read,
        ..Default::default()
    };
    state.set_ready(db.clone(), Arc::new(Receiver::new(db.clone(), opts)));
    (dir, db, router(state))
}

fn read_request(types: Vec<i32>, matchers: Vec<pb::LabelMatcher>, start: i64, end: i64) -> Vec<u8> {
    let req = pb::ReadRequest {
        queries: vec![pb::Query {
            start_timestamp_ms: start,
            end_timestamp_ms: end,
            matchers,
            hints: None,
        }],
        accepted_response_types: types,
    };
    snap::raw::Encoder::new()
        .compress_vec(&req.encode_to_vec())
        .unwrap()
}

fn eq(name: &str, value: &str) -> pb::LabelMatcher {
    pb::LabelMatcher {
        r#type: 0,
        name: name.into(),
        value: value.into(),
    }
}

async fn post(app: &axum::Router, body: Vec<u8>) -> (StatusCode, axum::http::HeaderMap, Bytes) {
    let resp = app
        .clone()
        .oneshot(
            Request::post("/api/v1/read")
                .body(Body::from(body))
                .unwrap(),
        )
        .await
        .unwrap();
    let (status, headers) = (resp.status(), resp.headers().clone());
    (
        status,
        headers,
        resp.into_body().collect().await.unwrap().to_bytes(),
    )
}

fn want(i: i64, start: i64, end: i64) -> Vec<(i64, u64)> {
    (0..300i64)
        .map(|k| {
            (
                1_000_000 + k * 1000,
                if k == 150 {
                    STALE_NAN.to_bits()
                } else {
                    ((k * (i + 1)) as f64).to_bits()
                },
            )
        })
        .filter(|(t, _)| *t >= start && *t <= end)
        .collect()
}

#[tokio::test]
async fn remote_read_samples_response() {
    let (_d, _db, app) = setup();
    let (status, headers, body) = post(
        &app,
        read_request(
            vec![0],
            vec![eq("__name__", "rr"), eq("i", "1")],
            1_050_000,
            1_200_000,
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body:?}");
    assert_eq!(headers["content-encoding"], "snappy");
    let resp = pb::ReadResponse::decode(
        snap::raw::Decoder::new()
            .decompress_vec(&body)
            .unwrap()
            .as_slice(),
    )
    .unwrap();
    assert_eq!(resp.results.len(), 1);
    let ts = &resp.results[0].timeseries;
    assert_eq!(ts.len(), 1);
    let got: Vec<(i64, u64)> = ts[0]
        .samples
        .iter()
        .map(|s| (s.timestamp, s.value.to_bits()))
        .collect();
    assert_eq!(
        got,
        want(1, 1_050_000, 1_200_000),
        "stale marker kept bit-exactly"
    );
}

#[tokio::test]
async fn remote_read_streamed_chunks_response() {
    let (_d, _db, app) = setup();
    let matcher = pb::LabelMatcher {
        r#type: 2,
        name: "i".into(),
        value: "0|2".into(),
    };
    let (status, headers, body) = post(
        &app,
        read_request(vec![1, 0], vec![eq("__name__", "rr"), matcher], 0, i64::MAX),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/x-streamed-protobuf; proto=prometheus.ChunkedReadResponse"));
    let mut d = Decbuf::new(&body);
    let mut got: Vec<(String, Vec<(i64, u64)>)> = Vec::new();
    while !d.is_empty() {
        let len = d.uvarint().unwrap() as usize;
        let crc = d.be_u32().unwrap();
        let msg = d.bytes(len).unwrap();
        assert_eq!(crc, crc32c::crc32c(msg), "frame CRC-32C");
        let frame = pb::ChunkedReadResponse::decode(msg).unwrap();
        assert_eq!(frame.query_index, 0);
        for cs in frame.chunked_series {
            let name = cs
                .labels
                .iter()
                .find(|l| &l.name[..] == b"i")
                .map(|l| String::from_utf8(l.value.to_vec()).unwrap())
                .unwrap();
            let mut samples = Vec::new();
            for c in &cs.chunks {
                assert_eq!(c.r#type, pb::chunk::Encoding::Xor as i32);
                let it: Vec<_> = XorIter::new(&c.data[..])
                    .map(|s| (s.t, s.v.to_bits()))
                    .collect();
                assert_eq!(
                    (it.first().unwrap().0, it.last().unwrap().0),
                    (c.min_time_ms, c.max_time_ms)
                );
                samples.extend(it);
            }
            got.push((name, samples));
        }
    }
    assert_eq!(
        got,
        vec![
            ("0".to_string(), want(0, 0, i64::MAX)),
            ("2".to_string(), want(2, 0, i64::MAX))
        ]
    );
}

#[tokio::test]
async fn remote_read_bad_bodies_are_400() {
    let (_d, _db, app) = setup();
    let (status, _, body) = post(&app, b"\xff\xff\xff".to_vec()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(String::from_utf8_lossy(&body).contains("snappy"));
    let (status, _, body) = post(
        &app,
        snap::raw::Encoder::new().compress_vec(b"\x0a\xff").unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(String::from_utf8_lossy(&body).contains("ReadRequest"));
    let bad_re = pb::LabelMatcher {
        r#type: 2,
        name: "i".into(),
        value: "(".into(),
    };
    let (status, _, body) = post(&app, read_request(vec![], vec![bad_re], 0, 1)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(String::from_utf8_lossy(&body).contains("invalid regular expression"));
}

fn matcher(r#type: i32, name: &str, value: &str) -> pb::LabelMatcher {
    pb::LabelMatcher {
        r#type,
        name: name.into(),
        value: value.into(),
    }
}

/// A body whose snappy header claims 4 GiB is refused from the header,
/// naming the limit and flag (before, it was decompressed into a buffer of
/// the claimed size).
#[tokio::test]
async fn remote_read_huge_declared_length_is_400_naming_the_flag() {
    let (_d, _db, app) = setup();
    // uvarint 0xffff_ffff, then a literal of a few bytes.
    let body = vec![0xff, 0xff, 0xff, 0xff, 0x0f, 0x08, b'a', b'b', b'c'];
    let (status, _, body) = post(&app, body).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let text = String::from_utf8_lossy(&body);
    assert!(
        text.contains("--storage.remote.read-max-decompressed-bytes"),
        "{text}"
    );
}

/// A query without matchers, or with only matchers that match the empty
/// string (which select every series), is 400; SAMPLES and streamed.
#[tokio::test]
async fn remote_read_without_selecting_matchers_is_400() {
    let (_d, _db, app) = setup();
    let cases = [
        vec![],
        vec![eq("job", "")],
        vec![matcher(2, "__name__", ".*")],
        vec![matcher(1, "job", "x"), matcher(3, "i", ".+")],
    ];
    for matchers in cases {
        for types in [vec![], vec![1]] {
            let (status, _, body) =
                post(&app, read_request(types, matchers.clone(), 0, i64::MAX)).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{matchers:?}");
            let text = String::from_utf8_lossy(&body);
            assert!(text.contains("no matcher that selects anything"), "{text}");
        }
    }
    // One selecting matcher among empty-matching ones is enough.
    let ok = vec![eq("job", ""), matcher(2, "__name__", "r.*")];
    let (status, _, _) = post(&app, read_request(vec![], ok, 0, i64::MAX)).await;
    assert_eq!(status, StatusCode::OK);
}

/// A read returning more samples than `--storage.remote.read-sample-limit`
/// is 400 with Prometheus's "exceeded sample limit"; at the limit it
/// answers. SAMPLES and streamed (the limit is hit before the first frame).
#[tokio::test]
async fn remote_read_sample_limit_is_400() {
    let limits = ReadLimits {
        sample_limit: 899,
        ..ReadLimits::default()
    };
    let (_d, _db, app) = setup_with(limits, ApiOptions::default());
    let all = || vec![eq("__name__", "rr")];
    for types in [vec![], vec![1]] {
        let (status, _, body) = post(&app, read_request(types.clone(), all(), 0, i64::MAX)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        let text = String::from_utf8_lossy(&body);
        assert!(text.contains("exceeded sample limit (899)"), "{text}");
        assert!(
            text.contains("--storage.remote.read-sample-limit"),
            "{text}"
        );
        // 3 series × 300 samples = 900; one series fewer fits.
        let two = vec![eq("__name__", "rr"), matcher(1, "i", "2")];
        let (status, _, _) = post(&app, read_request(types, two, 0, i64::MAX)).await;
        assert_eq!(status, StatusCode::OK);
    }
}

/// The query time-out applies to remote read (a zero time-out fails any
/// read that selects a series: 503 naming --query.timeout).
#[tokio::test]
async fn remote_read_query_timeout_applies() {
    let mut api = ApiOptions::default();
    api.engine.timeout = std::time::Duration::ZERO;
    let (_d, _db, app) = setup_with(ReadLimits::default(), api);
    for types in [vec![], vec![1]] {
        let (status, _, body) = post(
            &app,
            read_request(types, vec![eq("__name__", "rr")], 0, i64::MAX),
        )
        .await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(String::from_utf8_lossy(&body).contains("--query.timeout"));
    }
}

/// A streamed response is sent as many body frames, each one
/// `ChunkedReadResponse` frame of at most about
/// `--storage.remote.read-max-bytes-in-frame` of chunks (a few frames
/// buffered, never the whole answer), and they carry every sample.
#[tokio::test]
async fn remote_read_streams_bounded_frames() {
    let dir = tempfile::tempdir().unwrap();
    let db = Arc::new(Db::open(dir.path(), Options::default()).unwrap());
    let batch: Vec<SeriesSamples> = (0..200)
        .map(|i| SeriesSamples {
            created: Vec::new(),
            histograms: Vec::new(),
            labels: Labels::try_from_pairs([
                ("__name__", "many".to_string()),
                ("i", format!("{i:03}")),
            ])
            .unwrap(),
            samples: (0..500)
                .map(|k| Sample::new(1_000_000 + k * 1000, (k * i) as f64))
                .collect(),
        })
        .collect();
    assert!(db.append(&batch).unwrap().is_complete());
    let state = AppState::new();
    let opts = ReceiverOptions {
        read: ReadLimits {
            max_bytes_in_frame: 4096,
            ..ReadLimits::default()
        },
        ..Default::default()
    };
    state.set_ready(db.clone(), Arc::new(Receiver::new(db.clone(), opts)));
    let app = router(state);
    let resp = app
        .oneshot(
            Request::post("/api/v1/read")
                .body(Body::from(read_request(
                    vec![1],
                    vec![eq("__name__", "many")],
                    0,
                    i64::MAX,
                )))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let mut body = resp.into_body();
    let (mut body_frames, mut bytes) = (0usize, Vec::new());
    while let Some(f) = body.frame().await {
        let f = f.unwrap();
        if let Some(d) = f.data_ref() {
            body_frames += 1;
            bytes.extend_from_slice(d);
        }
    }
    let mut samples = 0usize;
    let mut messages = 0usize;
    let mut d = Decbuf::new(&bytes);
    while !d.is_empty() {
        let len = d.uvarint().unwrap() as usize;
        let _crc = d.be_u32().unwrap();
        let msg = pb::ChunkedReadResponse::decode(d.bytes(len).unwrap()).unwrap();
        messages += 1;
        let data: usize = msg
            .chunked_series
            .iter()
            .flat_map(|s| &s.chunks)
            .map(|c| c.data.len())
            .sum();
        // At most the limit plus the chunk that crossed it.
        assert!(data < 4096 + 1024, "frame with {data} bytes of chunks");
        for s in &msg.chunked_series {
            for c in &s.chunks {
                samples += XorIter::new(&c.data[..]).count();
            }
        }
    }
    assert_eq!(samples, 200 * 500);
    assert!(messages > 20, "{messages} frames");
    // Frames go out one by one, not as one buffer.
    assert!(body_frames > 20, "{body_frames} body frames");
}

/// Past the sample limit after frames went out, a streamed response ends
/// with an error (the client sees a broken stream, never a short answer
/// that looks complete).
#[tokio::test]
async fn remote_read_streamed_limit_after_first_frame_breaks_the_stream() {
    let limits = ReadLimits {
        sample_limit: 899,
        max_bytes_in_frame: 64,
        ..ReadLimits::default()
    };
    let (_d, _db, app) = setup_with(limits, ApiOptions::default());
    let resp = app
        .oneshot(
            Request::post("/api/v1/read")
                .body(Body::from(read_request(
                    vec![1],
                    vec![eq("__name__", "rr")],
                    0,
                    i64::MAX,
                )))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let mut body = resp.into_body();
    let mut frames = 0;
    let error = loop {
        match body.frame().await {
            Some(Ok(_)) => frames += 1,
            Some(Err(e)) => break e.to_string(),
            None => panic!("stream ended cleanly after {frames} frames"),
        }
    };
    assert!(frames > 0);
    assert!(error.contains("exceeded sample limit (899)"), "{error}");
}

/// Integer histograms (with a stale marker) on `hr{k="int"}`, float
/// histograms on `hr{k="float"}`, and a series switching from floats to
/// histograms on `hr{k="mixed"}`, each at 1 s from 1_000_000.
fn histogram_setup() -> (tempfile::TempDir, Arc<Db>, axum::Router) {
    use tidemark::model::{Histogram, HistogramSample, HistogramValue, Span};
    let (dir, db, app) = setup();
    let h = |k: i64| Histogram {
        count: 2 * k as u64 + 1,
        zero_count: 1,
        sum: k as f64 * 0.5,
        schema: 2,
        zero_threshold: 2f64.powi(-128),
        positive_spans: vec![Span {
            offset: -1,
            length: 2,
        }],
        positive_buckets: vec![k, 0],
        ..Default::default()
    };
    let series = |k: &str| Labels::try_from_pairs([("__name__", "hr"), ("k", k)]).unwrap();
    let batch = vec![
        SeriesSamples {
            created: Vec::new(),
            labels: series("int"),
            samples: vec![],
            histograms: (0..300)
                .map(|k| {
                    let mut v = h(k);
                    if k == 150 {
                        v.sum = STALE_NAN;
                    }
                    HistogramSample {
                        t: 1_000_000 + k * 1000,
                        h: HistogramValue::Int(v),
                    }
                })
                .collect(),
        },
        SeriesSamples {
            created: Vec::new(),
            labels: series("float"),
            samples: vec![],
            histograms: (0..300)
                .map(|k| HistogramSample {
                    t: 1_000_000 + k * 1000,
                    h: HistogramValue::Float(h(k).to_float()),
                })
                .collect(),
        },
        SeriesSamples {
            created: Vec::new(),
            labels: series("mixed"),
            samples: (0..100)
                .map(|k| Sample::new(1_000_000 + k * 1000, k as f64))
                .collect(),
            histograms: (100..200)
                .map(|k| HistogramSample {
                    t: 1_000_000 + k * 1000,
                    h: HistogramValue::Int(h(k)),
                })
                .collect(),
        },
    ];
    assert!(db.append(&batch).unwrap().is_complete());
    (dir, db, app)
}

/// What the querier holds for `k`, as (t, float histogram debug text).
fn histograms_of(db: &Db, k: &str, start: i64, end: i64) -> Vec<(i64, String)> {
    let q = db.querier(start, end);
    let s = q.select(&[
        tidemark::model::Matcher::eq("__name__", "hr"),
        tidemark::model::Matcher::eq("k", k),
    ]);
    s[0].histograms()
        .map(|(t, h)| {
            (
                t,
                format!(
                    "{:?}",
                    (h.count, h.zero_count, h.sum.to_bits(), h.positive_buckets)
                ),
            )
        })
        .collect()
}

#[tokio::test]
async fn remote_read_samples_response_carries_histograms() {
    let (_d, db, app) = histogram_setup();
    for k in ["int", "float", "mixed"] {
        let (status, _, body) = post(
            &app,
            read_request(
                vec![0],
                vec![eq("__name__", "hr"), eq("k", k)],
                1_050_000,
                1_250_000,
            ),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        let resp = pb::ReadResponse::decode(
            snap::raw::Decoder::new()
                .decompress_vec(&body)
                .unwrap()
                .as_slice(),
        )
        .unwrap();
        let ts = &resp.results[0].timeseries[0];
        let got: Vec<(i64, String)> = ts
            .histograms
            .iter()
            .map(|h| {
                let count = match h.count {
                    Some(pb::histogram::Count::CountInt(c)) => c as f64,
                    Some(pb::histogram::Count::CountFloat(c)) => c,
                    None => 0.0,
                };
                let zero = match h.zero_count {
                    Some(pb::histogram::ZeroCount::ZeroCountInt(c)) => c as f64,
                    Some(pb::histogram::ZeroCount::ZeroCountFloat(c)) => c,
                    None => 0.0,
                };
                let buckets: Vec<f64> = if h.positive_counts.is_empty() {
                    let mut cur = 0;
                    h.positive_deltas
                        .iter()
                        .map(|d| {
                            cur += d;
                            cur as f64
                        })
                        .collect()
                } else {
                    h.positive_counts.clone()
                };
                if STALE_NAN.to_bits() == h.sum.to_bits() {
                    return (
                        h.timestamp,
                        format!("{:?}", (0.0, 0.0, h.sum.to_bits(), Vec::<f64>::new())),
                    );
                }
                (
                    h.timestamp,
                    format!("{:?}", (count, zero, h.sum.to_bits(), buckets)),
                )
            })
            .collect();
        assert_eq!(got, histograms_of(&db, k, 1_050_000, 1_250_000), "{k}");
        assert!(!got.is_empty());
        assert_eq!(ts.samples.len(), if k == "mixed" { 50 } else { 0 }, "{k}");
    }
}

#[tokio::test]
async fn remote_read_streams_histogram_chunks_in_time_order() {
    use tidemark::storage::chunk::{FloatHistogramIter, HistogramIter};
    let (_d, db, app) = histogram_setup();
    let (status, _, body) = post(
        &app,
        read_request(vec![1], vec![eq("__name__", "hr")], 0, i64::MAX),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let mut d = Decbuf::new(&body);
    let mut seen = 0;
    while !d.is_empty() {
        let len = d.uvarint().unwrap() as usize;
        let _crc = d.be_u32().unwrap();
        let frame = pb::ChunkedReadResponse::decode(d.bytes(len).unwrap()).unwrap();
        for cs in frame.chunked_series {
            let k = cs
                .labels
                .iter()
                .find(|l| &l.name[..] == b"k")
                .map(|l| String::from_utf8(l.value.to_vec()).unwrap())
                .unwrap();
            let mut hists = Vec::new();
            let mut floats = 0;
            let mut last_max = i64::MIN;
            for c in &cs.chunks {
                assert!(c.min_time_ms > last_max, "{k}: chunks in time order");
                last_max = c.max_time_ms;
                let decoded: Vec<(i64, String)> = if c.r#type
                    == pb::chunk::Encoding::Histogram as i32
                {
                    HistogramIter::new(&c.data[..])
                        .map(|(t, h)| (t, h.to_float()))
                        .map(|(t, h)| {
                            (
                                t,
                                format!(
                                    "{:?}",
                                    (h.count, h.zero_count, h.sum.to_bits(), h.positive_buckets)
                                ),
                            )
                        })
                        .collect()
                } else if c.r#type == pb::chunk::Encoding::FloatHistogram as i32 {
                    FloatHistogramIter::new(&c.data[..])
                        .map(|(t, h)| {
                            (
                                t,
                                format!(
                                    "{:?}",
                                    (h.count, h.zero_count, h.sum.to_bits(), h.positive_buckets)
                                ),
                            )
                        })
                        .collect()
                } else {
                    assert_eq!(c.r#type, pb::chunk::Encoding::Xor as i32);
                    floats += XorIter::new(&c.data[..]).count();
                    continue;
                };
                assert_eq!(
                    (decoded[0].0, decoded[decoded.len() - 1].0),
                    (c.min_time_ms, c.max_time_ms)
                );
                let want_type = if k == "float" {
                    pb::chunk::Encoding::FloatHistogram
                } else {
                    pb::chunk::Encoding::Histogram
                };
                assert_eq!(c.r#type, want_type as i32, "{k}: stored kind kept");
                hists.extend(decoded);
            }
            assert_eq!(hists, histograms_of(&db, &k, 0, i64::MAX), "{k}");
            assert_eq!(floats, if k == "mixed" { 100 } else { 0 }, "{k}");
            seen += 1;
        }
    }
    assert_eq!(seen, 3);
}
