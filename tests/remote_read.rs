//! Remote read over HTTP (in-process): SAMPLES and STREAMED_XOR_CHUNKS
//! responses carry exactly the stored samples of the matching series in the
//! range; bad bodies are 400s.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use bytes::Bytes;
use http_body_util::BodyExt;
use prost::Message;
use tidemark::api::{router, AppState};
use tidemark::ingest::proto::prometheus as pb;
use tidemark::ingest::Receiver;
use tidemark::model::{Labels, Sample, STALE_NAN};
use tidemark::storage::chunk::XorIter;
use tidemark::storage::encoding::Decbuf;
use tidemark::storage::{Db, Options, SeriesSamples};
use tower::ServiceExt;

fn setup() -> (tempfile::TempDir, Arc<Db>, axum::Router) {
    let dir = tempfile::tempdir().unwrap();
    let db = Arc::new(Db::open(dir.path(), Options::default()).unwrap());
    let batch: Vec<SeriesSamples> = (0..3)
        .map(|i| SeriesSamples {
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
    let state = AppState::new();
    state.set_ready(
        db.clone(),
        Arc::new(Receiver::new(db.clone(), Default::default())),
    );
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
