//! Hostile remote-write and remote-read bodies over HTTP against the real
//! binary (issue 13): each is refused with the status and a message naming
//! the limit and its flag, the server stays up, and its peak RSS (VmHWM)
//! stays under [`RSS_BOUND_KIB`]. One fresh process per input, so each
//! peak is that input's; the peaks are printed for the record.
//!
//! Before the limits, the 12 MB body of empty samples alone took the
//! release binary to 4.8 GiB.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::http;
use common::proc::{free_port, start_tidemark_with, wait_ready, Proc};
use prost::Message;
use tidemark::ingest::proto::prometheus as pb;

/// Peak RSS allowed per input: 512 MiB.
const RSS_BOUND_KIB: u64 = 512 * 1024;

const V1_CT: &str = "application/x-protobuf;proto=prometheus.WriteRequest";
const V2_CT: &str = "application/x-protobuf;proto=io.prometheus.write.v2.Request";

fn varint(mut v: u64) -> Vec<u8> {
    let mut out = Vec::new();
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
    out
}

/// A snappy block, built by hand, that decompresses to `prefix` followed
/// by `pattern` (two bytes) repeated `1 + 32 * copies` times: one literal,
/// then `copies` overlapping 64-byte copies at offset 2. About 3 bytes per
/// 64 decompressed, so megabytes of body stand for hundreds of megabytes.
fn snappy_run(prefix: &[u8], pattern: [u8; 2], copies: usize) -> Vec<u8> {
    let literal: Vec<u8> = prefix.iter().copied().chain(pattern).collect();
    assert!(literal.len() <= 60);
    let total = literal.len() + 64 * copies;
    let mut out = varint(total as u64);
    out.push(((literal.len() - 1) as u8) << 2);
    out.extend_from_slice(&literal);
    for _ in 0..copies {
        out.extend_from_slice(&[(63 << 2) | 2, 2, 0]);
    }
    out
}

/// One 1.0 series (field 1) holding `1 + 32 * copies` empty samples.
fn empty_samples_body(copies: usize) -> Vec<u8> {
    let series_len = 2 + 64 * copies;
    let mut prefix = vec![0x0a];
    prefix.extend(varint(series_len as u64));
    snappy_run(&prefix, [0x12, 0x00], copies)
}

fn snappy(raw: &[u8]) -> Vec<u8> {
    snap::raw::Encoder::new().compress_vec(raw).unwrap()
}

fn label(n: &str, v: &str) -> pb::Label {
    pb::Label {
        name: Bytes::copy_from_slice(n.as_bytes()),
        value: Bytes::copy_from_slice(v.as_bytes()),
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn series(labels: Vec<pb::Label>, t: i64) -> pb::TimeSeries {
    pb::TimeSeries {
        labels,
        samples: vec![pb::Sample {
            value: 1.0,
            timestamp: t,
        }],
        ..Default::default()
    }
}

fn write_body(ts: Vec<pb::TimeSeries>, metadata: Vec<pb::MetricMetadata>) -> Vec<u8> {
    snappy(
        &pb::WriteRequest {
            timeseries: ts,
            metadata,
        }
        .encode_to_vec(),
    )
}

fn read_body(matchers: Vec<pb::LabelMatcher>, types: Vec<i32>) -> Vec<u8> {
    snappy(
        &pb::ReadRequest {
            queries: vec![pb::Query {
                start_timestamp_ms: 0,
                end_timestamp_ms: i64::MAX,
                matchers,
                hints: None,
            }],
            accepted_response_types: types,
        }
        .encode_to_vec(),
    )
}

/// A running tidemark for one input.
struct Node {
    _dir: tempfile::TempDir,
    addr: String,
    proc: Proc,
}

fn start(extra: &[&str]) -> Node {
    let dir = tempfile::tempdir().unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let mut proc = start_tidemark_with(&addr, dir.path(), extra);
    wait_ready(&mut proc, &addr, Duration::from_secs(60));
    Node {
        _dir: dir,
        addr,
        proc,
    }
}

impl Node {
    fn post(&self, path: &str, ct: &str, body: &[u8]) -> (u16, String) {
        let (status, body) = http::request(
            &self.addr,
            "POST",
            path,
            &[("Content-Type", ct), ("Content-Encoding", "snappy")],
            body,
        )
        .unwrap_or_else(|| panic!("no answer from {path}: connection dropped"));
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    /// Asserts the node is alive and under the RSS bound; prints the peak.
    fn check(&mut self, input: &str) {
        self.proc.assert_alive(&self.addr);
        let peak = self.proc.peak_rss_kib().unwrap();
        eprintln!("hostile input {input:?}: peak RSS {} MiB", peak / 1024);
        assert!(
            peak < RSS_BOUND_KIB,
            "{input}: peak RSS {} MiB over the bound of {} MiB",
            peak / 1024,
            RSS_BOUND_KIB / 1024
        );
    }
}

fn assert_answer(input: &str, got: (u16, String), status: u16, needles: &[&str]) {
    let head: String = got.1.chars().take(600).collect();
    assert_eq!(got.0, status, "{input}: {head}");
    for n in needles {
        assert!(got.1.contains(n), "{input}: {n:?} not in {head}");
    }
    assert!(
        got.1.len() < 16 << 10,
        "{input}: answer of {} bytes",
        got.1.len()
    );
}

/// The 12 MB snappy body of empty samples (256 MB decompressed) from the
/// issue, and one of 60 MiB decompressed that passes the decompressed
/// limit and is stopped by counting samples; also 1.0 series and 2.0
/// series of nothing.
#[test]
fn empty_samples_and_series_are_refused_cheaply() {
    let body = empty_samples_body(4_000_000);
    assert!(body.len() >= 12_000_000);
    let mut n = start(&[]);
    let got = n.post("/api/v1/write", V1_CT, &body);
    assert_answer(
        "12 MB body of empty samples",
        got,
        400,
        &["--max-write-decompressed-bytes"],
    );
    n.check("12 MB body of empty samples");
    drop(n);

    // With the decompressed limit at the old 256 MiB, the same body and
    // one of empty series are stopped by counting (both were 3.2 and
    // 4.8 GiB of RSS before).
    let inputs: [(&str, Vec<u8>, &str); 2] = [
        (
            "12 MB body of empty samples, 256 MiB decompressed limit",
            body,
            "--max-write-samples-per-request",
        ),
        (
            "12 MB body of empty series, 256 MiB decompressed limit",
            snappy_run(&[], [0x0a, 0x00], 4_000_000),
            "--max-write-series-per-request",
        ),
    ];
    for (input, body, flag) in inputs {
        let mut n = start(&["--max-write-decompressed-bytes=268435456"]);
        let got = n.post("/api/v1/write", V1_CT, &body);
        assert_answer(input, got, 400, &["request has more than", flag]);
        n.check(input);
    }

    let copies = (60 << 20) / 64;
    let inputs: [(&str, &str, Vec<u8>, &str); 3] = [
        (
            "60 MiB of empty samples",
            V1_CT,
            empty_samples_body(copies),
            "--max-write-samples-per-request",
        ),
        (
            "60 MiB of empty 1.0 series",
            V1_CT,
            snappy_run(&[], [0x0a, 0x00], copies),
            "--max-write-series-per-request",
        ),
        (
            "60 MiB of empty 2.0 series",
            V2_CT,
            snappy_run(&[], [0x2a, 0x00], copies),
            "--max-write-series-per-request",
        ),
    ];
    for (input, ct, body, flag) in inputs {
        let mut n = start(&[]);
        let got = n.post("/api/v1/write", ct, &body);
        assert_answer(input, got, 400, &["request has more than", flag]);
        n.check(input);
    }
}

/// Too many series, too many labels, a 1 MB label value: each is 400
/// naming the limit and flag. A huge exemplar and a huge metadata help are
/// dropped and counted, and the samples beside them stored: 204 (issue 22:
/// never a failure of the samples beside them; they were 400 before).
#[test]
fn oversized_series_exemplars_and_metadata_are_refused() {
    let t = now_ms();
    let many_series: Vec<pb::TimeSeries> = (0..100_001)
        .map(|i| series(vec![label("__name__", "m"), label("i", &i.to_string())], t))
        .collect();
    let many_labels: Vec<pb::Label> = std::iter::once(label("__name__", "wide"))
        .chain((0..10_000).map(|i| label(&format!("l{i}"), "v")))
        .collect();
    let big = "v".repeat(1 << 20);
    let mut exemplar = series(vec![label("__name__", "ex")], t);
    exemplar.exemplars.push(pb::Exemplar {
        labels: vec![label("trace_id", &big)],
        value: 1.0,
        timestamp: t,
    });
    let help = pb::MetricMetadata {
        r#type: 1,
        metric_family_name: "md".into(),
        help: "h".repeat(10 << 20),
        unit: String::new(),
    };
    let inputs: Vec<(&str, Vec<u8>, &[&str])> = vec![
        (
            "100,001 series",
            write_body(many_series, vec![]),
            &[
                "request has more than 100000 series",
                "--max-write-series-per-request",
            ],
        ),
        (
            "10,001 labels",
            write_body(vec![series(many_labels, t)], vec![]),
            &["too_many_labels=1", "--max-labels-per-timeseries"],
        ),
        (
            "1 MB label value",
            write_body(
                vec![series(vec![label("__name__", "v"), label("a", &big)], t)],
                vec![],
            ),
            &["label_value_too_long=1", "--max-label-value-len"],
        ),
    ];
    for (input, body, needles) in inputs {
        let mut n = start(&[]);
        let got = n.post("/api/v1/write", V1_CT, &body);
        assert_answer(input, got, 400, needles);
        n.check(input);
    }
    let dropped: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "1 MB exemplar label",
            write_body(vec![exemplar], vec![]),
            r#"tidemark_remote_write_exemplars_dropped_total{reason="labels_too_long"} 1"#,
        ),
        (
            "10 MB metadata help",
            write_body(vec![series(vec![label("__name__", "md")], t)], vec![help]),
            r#"tidemark_remote_write_metadata_dropped_total{reason="too_long"} 1"#,
        ),
    ];
    for (input, body, counted) in dropped {
        let mut n = start(&[]);
        let got = n.post("/api/v1/write", V1_CT, &body);
        assert_answer(input, got, 204, &[]);
        let (status, metrics) =
            http::request(&n.addr, "GET", "/metrics", &[], b"").expect("/metrics answers");
        let metrics = String::from_utf8_lossy(&metrics);
        assert_eq!(status, 200);
        assert!(
            metrics.lines().any(|l| l == counted),
            "{input}: {counted:?} not in /metrics"
        );
        assert!(
            metrics
                .lines()
                .any(|l| l == "tidemark_remote_write_samples_stored_total 1"),
            "{input}: the sample beside it was not stored"
        );
        n.check(input);
    }
}

/// Remote read: a huge claimed decompressed length, a query without
/// matchers, and a read over many series past the sample limit.
#[test]
fn hostile_remote_reads_are_refused() {
    let mut n = start(&["--storage.remote.read-sample-limit=5000"]);
    // 1,000 series of 10 samples, written the ordinary way.
    let t = now_ms() - 60_000;
    let ts: Vec<pb::TimeSeries> = (0..1000)
        .map(|i| pb::TimeSeries {
            labels: vec![label("__name__", "rr"), label("i", &i.to_string())],
            samples: (0..10)
                .map(|k| pb::Sample {
                    value: k as f64,
                    timestamp: t + k * 1000,
                })
                .collect(),
            ..Default::default()
        })
        .collect();
    let (status, _) = n.post("/api/v1/write", V1_CT, &write_body(ts, vec![]));
    assert_eq!(status, 204);

    let huge_claim = vec![0xff, 0xff, 0xff, 0xff, 0x0f, 0x08, b'a', b'b', b'c'];
    let all = || {
        vec![pb::LabelMatcher {
            r#type: 0,
            name: "__name__".into(),
            value: "rr".into(),
        }]
    };
    let inputs: Vec<(&str, Vec<u8>, &[&str])> = vec![
        (
            "read claiming 4 GiB",
            huge_claim,
            &["--storage.remote.read-max-decompressed-bytes"],
        ),
        (
            "read without matchers",
            read_body(vec![], vec![]),
            &["no matcher that selects anything"],
        ),
        (
            "read of 10,000 samples (SAMPLES)",
            read_body(all(), vec![]),
            &[
                "exceeded sample limit (5000)",
                "--storage.remote.read-sample-limit",
            ],
        ),
        (
            "read of 10,000 samples (streamed)",
            read_body(all(), vec![1]),
            &[
                "exceeded sample limit (5000)",
                "--storage.remote.read-sample-limit",
            ],
        ),
    ];
    for (input, body, needles) in inputs {
        let got = n.post("/api/v1/read", "application/x-protobuf", &body);
        assert_answer(input, got, 400, needles);
        n.check(input);
    }
}

/// One sample at `i64::MIN` (or any time before 1970) on a fresh store is a
/// 400 naming the reason; it used to be stored, after which compaction
/// wrapped the head's floor to the far future and every later write
/// answered 204 and vanished, also after a restart.
#[test]
fn timestamps_before_1970_are_refused_and_break_nothing() {
    let mut node = start(&["--compaction-interval", "100ms"]);
    let metric = |t: i64| series(vec![label("__name__", "edge_t")], t);
    for t in [i64::MIN, i64::MIN + 1, -1] {
        let got = node.post("/api/v1/write", V1_CT, &write_body(vec![metric(t)], vec![]));
        assert_answer(
            &format!("sample at {t}"),
            got,
            400,
            &["before_1970", "before 1970"],
        );
    }
    let now = now_ms();
    let got = node.post(
        "/api/v1/write",
        V1_CT,
        &write_body(vec![metric(now)], vec![]),
    );
    assert_eq!(got.0, 204, "{}", got.1);
    // Give compaction a few rounds, then the sample must be there.
    std::thread::sleep(Duration::from_millis(500));
    let (status, body) = http::get(
        &node.addr,
        &format!("/api/v1/query?query=edge_t&time={}", now as f64 / 1000.0),
    )
    .unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("\"edge_t\""),
        "the sample written after vanished: {body}"
    );
    let got = node.post(
        "/api/v1/write",
        V1_CT,
        &write_body(vec![metric(now + 1000)], vec![]),
    );
    assert_eq!(got.0, 204, "{}", got.1);
    node.check("samples before 1970");
}
