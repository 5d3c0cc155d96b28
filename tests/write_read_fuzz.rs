//! Stable-toolchain fuzzing of the remote-write and remote-read handlers,
//! in process through the router (issue 13): arbitrary bytes and
//! structurally generated but hostile protobuf bodies (nested fields of any
//! number and wire type, runs of thousands of empty entries, lengths that
//! lie), snappy-compressed and not, against small limits. Every request
//! must get an answer (the `oneshot` future resolves, so no dropped
//! connection) with a status from the handler's documented set: a panic
//! inside a handler's task shows up as a 5xx and fails the property.
//! About 2,300 cases per run.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use prost::Message;
use tidemark::api::{router, AppState};
use tidemark::ingest::proto::prometheus as pb;
use tidemark::ingest::{ReadLimits, Receiver, ReceiverOptions, WriteLimits};
use tidemark::storage::wal::{FsyncPolicy, WalOptions};
use tidemark::storage::{Db, Options};
use tower::ServiceExt;

const V1_CT: &str = "application/x-protobuf;proto=prometheus.WriteRequest";
const V2_CT: &str = "application/x-protobuf;proto=io.prometheus.write.v2.Request";

/// A router over a fresh Db (no fsync) with small limits, so generated
/// bodies reach every limit.
struct Harness {
    _dir: tempfile::TempDir,
    app: axum::Router,
    rt: tokio::runtime::Runtime,
}

fn harness() -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let opts = Options {
        wal: WalOptions {
            fsync: FsyncPolicy::Never,
            ..WalOptions::default()
        },
        ..Options::default()
    };
    let db = Arc::new(Db::open(dir.path(), opts).unwrap());
    let state = AppState::new();
    let ropts = ReceiverOptions {
        max_body_bytes: 1 << 20,
        max_decompressed_bytes: 4 << 20,
        limits: WriteLimits {
            max_samples_per_request: 2000,
            max_series_per_request: 200,
            max_labels_per_request: 2000,
            max_exemplars_per_request: 100,
            max_metadata_per_request: 100,
            max_labels_per_series: 20,
            max_label_name_len: 32,
            max_label_value_len: 64,
            max_exemplar_labels_len: 32,
            max_metadata_text_len: 64,
        },
        read: ReadLimits {
            max_decompressed_bytes: 1 << 20,
            sample_limit: 5000,
            max_bytes_in_frame: 512,
        },
        ..ReceiverOptions::default()
    };
    let receiver = Arc::new(Receiver::with_metrics(
        db.clone(),
        ropts,
        state.ingest_metrics(),
    ));
    state.set_ready(db, receiver);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    Harness {
        _dir: dir,
        app: router(state),
        rt,
    }
}

impl Harness {
    /// POSTs and reads the whole answer; a body that fails mid-stream (a
    /// streamed read past the sample limit) counts as answered.
    fn post(&self, path: &str, ct: Option<&str>, body: Vec<u8>) -> StatusCode {
        self.rt.block_on(async {
            let mut req = Request::post(path).header("content-encoding", "snappy");
            if let Some(ct) = ct {
                req = req.header("content-type", ct);
            }
            let resp = self
                .app
                .clone()
                .oneshot(req.body(Body::from(body)).unwrap())
                .await
                .expect("the router always answers");
            let status = resp.status();
            let _ = resp.into_body().collect().await;
            status
        })
    }
}

fn snappy(raw: &[u8]) -> Vec<u8> {
    snap::raw::Encoder::new().compress_vec(raw).unwrap()
}

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// A protobuf-shaped value: any field number and wire type, nested
/// messages, runs of one entry repeated many times, and lengths that may
/// lie.
#[derive(Debug, Clone)]
enum Node {
    Varint(u32, u64),
    Fixed64(u32, u64),
    Fixed32(u32, u32),
    Bytes(u32, Vec<u8>),
    Message(u32, Vec<Node>),
    /// `count` copies of one node (thousands of empty samples, series…).
    Repeat(u32, Box<Node>),
    /// A length prefix off by `delta` from the content.
    Lying(u32, i8, Vec<u8>),
    /// A tag with an invalid wire type (groups, 6, 7).
    BadWire(u32, u8),
}

/// Generated bodies stop growing past this (nested repeats multiply).
const MAX_BODY: usize = 1 << 20;

fn encode(nodes: &[Node], out: &mut Vec<u8>) {
    for n in nodes {
        match n {
            Node::Varint(f, v) => {
                varint(out, u64::from(*f) << 3);
                varint(out, *v);
            }
            Node::Fixed64(f, v) => {
                varint(out, (u64::from(*f) << 3) | 1);
                out.extend_from_slice(&v.to_le_bytes());
            }
            Node::Fixed32(f, v) => {
                varint(out, (u64::from(*f) << 3) | 5);
                out.extend_from_slice(&v.to_le_bytes());
            }
            Node::Bytes(f, b) => {
                varint(out, (u64::from(*f) << 3) | 2);
                varint(out, b.len() as u64);
                out.extend_from_slice(b);
            }
            Node::Message(f, inner) => {
                let mut b = Vec::new();
                encode(inner, &mut b);
                varint(out, (u64::from(*f) << 3) | 2);
                varint(out, b.len() as u64);
                out.extend(b);
            }
            Node::Repeat(count, node) => {
                let mut one = Vec::new();
                encode(std::slice::from_ref(node), &mut one);
                for _ in 0..*count {
                    if out.len() > MAX_BODY {
                        break;
                    }
                    out.extend_from_slice(&one);
                }
            }
            Node::Lying(f, delta, b) => {
                varint(out, (u64::from(*f) << 3) | 2);
                varint(out, (b.len() as i64 + i64::from(*delta)).max(0) as u64);
                out.extend_from_slice(b);
            }
            Node::BadWire(f, w) => varint(out, (u64::from(*f) << 3) | u64::from(*w)),
        }
    }
}

/// Field numbers that mean something in the remote-write and -read
/// messages (1-5, histogram fields up to 17), plus an unknown one and 0.
fn field() -> impl Strategy<Value = u32> {
    prop_oneof![8 => 1u32..=5, 2 => 6u32..=17, 1 => Just(0u32), 1 => Just(1000u32)]
}

fn text() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => prop::sample::select(vec!["__name__", "job", "up", "", "a", ".*", "(", "le"])
            .prop_map(|s| s.as_bytes().to_vec()),
        2 => prop::collection::vec(any::<u8>(), 0..40),
        1 => (1usize..300).prop_map(|n| vec![b'x'; n]),
    ]
}

fn node() -> impl Strategy<Value = Node> {
    let leaf = prop_oneof![
        3 => (field(), any::<u64>()).prop_map(|(f, v)| Node::Varint(f, v)),
        1 => (field(), any::<u64>()).prop_map(|(f, v)| Node::Fixed64(f, v)),
        1 => (field(), any::<u32>()).prop_map(|(f, v)| Node::Fixed32(f, v)),
        3 => (field(), text()).prop_map(|(f, b)| Node::Bytes(f, b)),
        1 => (field(), -3i8..=3, text()).prop_map(|(f, d, b)| Node::Lying(f, d, b)),
        1 => (field(), prop::sample::select(vec![3u8, 4, 6, 7])).prop_map(|(f, w)| Node::BadWire(f, w)),
    ];
    leaf.prop_recursive(3, 48, 6, |inner| {
        prop_oneof![
            4 => (field(), prop::collection::vec(inner.clone(), 0..6))
                .prop_map(|(f, v)| Node::Message(f, v)),
            1 => (prop_oneof![Just(0u32), 1u32..10, 100u32..5000], inner)
                .prop_map(|(n, node)| Node::Repeat(n, Box::new(node))),
        ]
    })
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(node(), 0..6).prop_map(|nodes| {
        let mut out = Vec::new();
        encode(&nodes, &mut out);
        out
    })
}

/// The statuses the write handler may answer: stored (204), refused or
/// partial (400), too large (413), unsupported headers (415). A 5xx would
/// be a panic or a storage failure, neither of which a body may cause.
fn write_ok(s: StatusCode) -> bool {
    matches!(s.as_u16(), 204 | 400 | 413 | 415)
}

/// The statuses of the read handler: an answer (200), refused (400), too
/// large (413).
fn read_ok(s: StatusCode) -> bool {
    matches!(s.as_u16(), 200 | 400 | 413)
}

fn runner(cases: u32) -> TestRunner {
    TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    })
}

#[test]
fn write_handler_answers_arbitrary_bytes() {
    let h = harness();
    let strategy = (
        prop::collection::vec(any::<u8>(), 0..2048),
        any::<bool>(),
        prop::sample::select(vec![Some(V1_CT), Some(V2_CT), None, Some("text/plain")]),
    );
    runner(512)
        .run(&strategy, |(bytes, compress, ct)| {
            let body = if compress { snappy(&bytes) } else { bytes };
            let s = h.post("/api/v1/write", ct, body);
            prop_assert!(write_ok(s), "status {s}");
            Ok(())
        })
        .unwrap();
}

#[test]
fn write_handler_answers_hostile_protobuf() {
    let h = harness();
    let strategy = (
        body(),
        any::<bool>(),
        prop::sample::select(vec![V1_CT, V2_CT]),
    );
    runner(1024)
        .run(&strategy, |(raw, compress, ct)| {
            let body = if compress { snappy(&raw) } else { raw };
            let s = h.post("/api/v1/write", Some(ct), body);
            prop_assert!(write_ok(s), "status {s}");
            Ok(())
        })
        .unwrap();
}

/// Matchers of any type (including unknown ones), names and values.
fn matcher() -> impl Strategy<Value = pb::LabelMatcher> {
    (
        -1i32..5,
        prop::sample::select(vec!["__name__", "job", "", "i"]),
        prop::sample::select(vec!["up", "", ".*", ".+", "(", "u.*", "x|y"]),
    )
        .prop_map(|(t, n, v)| pb::LabelMatcher {
            r#type: t,
            name: n.into(),
            value: v.into(),
        })
}

fn read_request() -> impl Strategy<Value = Vec<u8>> {
    let query = (
        any::<i64>(),
        any::<i64>(),
        prop::collection::vec(matcher(), 0..4),
    )
        .prop_map(|(start, end, matchers)| pb::Query {
            start_timestamp_ms: start,
            end_timestamp_ms: end,
            matchers,
            hints: None,
        });
    (
        prop::collection::vec(query, 0..4),
        prop::collection::vec(-1i32..4, 0..3),
    )
        .prop_map(|(queries, types)| {
            pb::ReadRequest {
                queries,
                accepted_response_types: types,
            }
            .encode_to_vec()
        })
}

#[test]
fn read_handler_answers_hostile_requests() {
    let h = harness();
    // Some data to read: 50 series `up{job="j<i>"}`, 200 samples each.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
        - 3_600_000;
    let series: Vec<pb::TimeSeries> = (0..50)
        .map(|i| pb::TimeSeries {
            labels: vec![
                pb::Label {
                    name: "__name__".into(),
                    value: "up".into(),
                },
                pb::Label {
                    name: "job".into(),
                    value: format!("j{i}").into(),
                },
            ],
            samples: (0..200)
                .map(|k| pb::Sample {
                    value: k as f64,
                    timestamp: now + k * 1000,
                })
                .collect(),
            ..Default::default()
        })
        .collect();
    let write = pb::WriteRequest {
        timeseries: series,
        metadata: vec![],
    };
    // 10,000 samples is over the harness's limit: 2,000 per request.
    for part in write.timeseries.chunks(10) {
        let req = pb::WriteRequest {
            timeseries: part.to_vec(),
            metadata: vec![],
        };
        let s = h.post("/api/v1/write", Some(V1_CT), snappy(&req.encode_to_vec()));
        assert_eq!(s, StatusCode::NO_CONTENT);
    }
    let strategy = prop_oneof![
        2 => read_request(),
        2 => body(),
        1 => prop::collection::vec(any::<u8>(), 0..512),
    ];
    runner(768)
        .run(&(strategy, any::<bool>()), |(raw, compress)| {
            let body = if compress { snappy(&raw) } else { raw };
            let s = h.post("/api/v1/read", Some("application/x-protobuf"), body);
            prop_assert!(read_ok(s), "status {s}");
            Ok(())
        })
        .unwrap();
}
