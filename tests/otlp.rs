//! OTLP/HTTP metrics end to end: the OpenTelemetry Python SDK's OTLP/HTTP
//! exporter (a real client, `tests/otlp/send.py`) sends counters,
//! up-down counters, gauges, histograms and exponential histograms to
//! `/api/v1/otlp/v1/metrics`; PromQL returns the names, labels and values
//! Prometheus 3's translator gives (`UnderscoreEscapingWithSuffixes`: unit
//! and `_total` suffixes, `job` = `service.namespace/service.name`,
//! `instance` = `service.instance.id`, `target_info` with the remaining
//! resource attributes). Also JSON bodies, gzip, a malformed body, a wrong
//! content type, a partial success, and start times as created timestamps
//! (`--enable-created-timestamp-zero-ingestion`). Hostile bodies meet
//! remote write's limits (a gzip bomb, a protobuf of empty points, too many
//! JSON values, over-long labels, future timestamps). The `--otlp.*` flags
//! (translation strategy, promoted resource attributes, scope metadata,
//! identifying attributes on `target_info`, native delta ingestion) are
//! driven through the Python SDK too.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::http;
use common::proc::{free_port, start_tidemark, start_tidemark_with, wait_ready, Proc};
use serde_json::Value;

const PATH: &str = "/api/v1/otlp/v1/metrics";

fn start() -> (tempfile::TempDir, String, Proc) {
    let dir = tempfile::tempdir().unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let mut p = start_tidemark(&addr, &dir.path().join("data"));
    wait_ready(&mut p, &addr, Duration::from_secs(60));
    (dir, addr, p)
}

/// `query` at now: (labels as JSON, float value or histogram count).
fn query(addr: &str, q: &str) -> Vec<(Value, String)> {
    let (status, body) =
        http::get(addr, &format!("/api/v1/query?query={}", http::encode(q))).unwrap();
    assert_eq!(status, 200, "{q}: {body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    v["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let value = if r["value"].is_array() {
                r["value"][1].as_str().unwrap().to_string()
            } else {
                format!("H count={}", r["histogram"][1]["count"].as_str().unwrap())
            };
            (r["metric"].clone(), value)
        })
        .collect()
}

fn one(addr: &str, q: &str) -> (Value, String) {
    let r = query(addr, q);
    assert_eq!(r.len(), 1, "{q}: {r:?}");
    r.into_iter().next().unwrap()
}

fn send_with_sdk(addr: &str, mode: &str) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/otlp/send.py");
    let out = Command::new("python3")
        .arg(&script)
        .arg(format!("http://{addr}{PATH}"))
        .arg(mode)
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "the OpenTelemetry SDK failed ({mode}); scripts/test installs opentelemetry-sdk and \
         opentelemetry-exporter-otlp-proto-http:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn python_sdk_metrics_are_translated_as_prometheus_does() {
    let (_dir, addr, mut p) = start();
    send_with_sdk(&addr, "plain");
    let job = |v: &Value| {
        assert_eq!(v["job"], "shop/checkout", "{v}");
        assert_eq!(v["instance"], "pod-1", "{v}");
    };
    // A monotonic counter: unit in braces dropped, `_total` added,
    // attribute names sanitized.
    let (l, v) = one(&addr, "http_server_requests_total");
    job(&l);
    assert_eq!((l["http_method"].as_str(), v.as_str()), (Some("GET"), "5"));
    // An up-down counter (non-monotonic sum) is a gauge: no `_total`.
    assert_eq!(one(&addr, "queue_size").1, "7");
    // A gauge with unit By: `_bytes`.
    let (l, v) = one(&addr, "memory_usage_bytes");
    assert_eq!((l["area"].as_str(), v.as_str()), (Some("heap"), "1024"));
    // A histogram with unit ms: classic buckets with Prometheus's `le`.
    assert_eq!(one(&addr, "http_server_duration_milliseconds_count").1, "3");
    assert_eq!(one(&addr, "http_server_duration_milliseconds_sum").1, "333");
    assert_eq!(
        one(&addr, "http_server_duration_milliseconds_bucket{le=\"25\"}").1,
        "1"
    );
    assert_eq!(
        one(
            &addr,
            "http_server_duration_milliseconds_bucket{le=\"+Inf\"}"
        )
        .1,
        "3"
    );
    // An exponential histogram: a native histogram.
    assert_eq!(one(&addr, "rpc_latency_seconds").1, "H count=4");
    assert_eq!(one(&addr, "histogram_count(rpc_latency_seconds)").1, "4");
    let q = one(&addr, "histogram_quantile(0.5, rpc_latency_seconds)").1;
    let q: f64 = q.parse().unwrap();
    assert!(
        (0.19..=0.41).contains(&q),
        "median of 0.1, 0.2, 0.4, 0.8: {q}"
    );
    // target_info: the other resource attributes.
    let (l, v) = one(&addr, "target_info");
    job(&l);
    assert_eq!(v, "1");
    assert_eq!(l["deployment_environment"], "test");
    assert_eq!(l["telemetry_sdk_language"], "python");
    // Metadata as for remote write.
    let (_, md) = http::get(&addr, "/api/v1/metadata?metric=http_server_requests_total").unwrap();
    let md: Value = serde_json::from_str(&md).unwrap();
    assert_eq!(
        md["data"]["http_server_requests_total"][0]["type"], "counter",
        "{md}"
    );
    assert_eq!(
        md["data"]["http_server_requests_total"][0]["help"],
        "Requests served."
    );
    // The unit as Prometheus 3 stores it (otlptranslator's
    // `UnitNamer.Build`): `{request}` → empty, `By` → `bytes`, `ms` →
    // `milliseconds`.
    let unit_of = |family: &str| {
        let (_, md) = http::get(&addr, &format!("/api/v1/metadata?metric={family}")).unwrap();
        let md: Value = serde_json::from_str(&md).unwrap();
        md["data"][family][0]["unit"].as_str().map(str::to_string)
    };
    assert_eq!(unit_of("http_server_requests_total").as_deref(), Some(""));
    assert_eq!(unit_of("memory_usage_bytes").as_deref(), Some("bytes"));
    assert_eq!(
        unit_of("http_server_duration_milliseconds").as_deref(),
        Some("milliseconds")
    );

    // The same through gzip bodies: nothing new, nothing refused.
    send_with_sdk(&addr, "gzip");
    assert_eq!(one(&addr, "http_server_requests_total").1, "5");

    // Delta temporality is refused per point and counted; the rest stays.
    send_with_sdk(&addr, "delta");
    assert!(query(&addr, "{__name__=~\"delta.*\"}").is_empty());
    let (_, metrics) = http::get(&addr, "/metrics").unwrap();
    assert!(
        metrics.contains("tidemark_otlp_data_points_total{result=\"rejected\"} 1"),
        "{metrics}"
    );
    // Requests by result: the delta export was a partial success.
    assert!(
        metrics.contains("tidemark_otlp_requests_total{result=\"partial\"} 1"),
        "{metrics}"
    );
    assert!(
        !metrics.contains("tidemark_otlp_requests_total{result=\"success\"} 0"),
        "{metrics}"
    );
    p.assert_alive(&addr);
}

fn now_nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

fn post(addr: &str, content_type: &str, encoding: Option<&str>, body: &[u8]) -> (u16, String) {
    let mut headers = vec![("Content-Type", content_type)];
    if let Some(e) = encoding {
        headers.push(("Content-Encoding", e));
    }
    let (status, body) = http::request(addr, "POST", PATH, &headers, body).unwrap();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[test]
fn json_gzip_malformed_and_partial_success() {
    let (_dir, addr, mut p) = start();
    let t = now_nanos();
    // OTLP JSON as the spec encodes it: lowerCamelCase, 64-bit integers as
    // strings, enums as numbers.
    let json = format!(
        r#"{{"resourceMetrics":[{{"resource":{{"attributes":[
            {{"key":"service.name","value":{{"stringValue":"api"}}}}]}},
          "scopeMetrics":[{{"metrics":[
            {{"name":"temperature","unit":"Cel","gauge":{{"dataPoints":[
              {{"timeUnixNano":"{t}","asDouble":21.5,
                "attributes":[{{"key":"room","value":{{"stringValue":"lab"}}}}]}}]}}}},
            {{"name":"jobs.done","sum":{{"aggregationTemporality":1,"isMonotonic":true,
              "dataPoints":[{{"timeUnixNano":"{t}","asInt":"3"}}]}}}}]}}]}}]}}"#
    );
    let (status, body) = post(&addr, "application/json", None, json.as_bytes());
    assert_eq!(status, 200, "{body}");
    // The delta sum is refused: a partial success, in JSON.
    let resp: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(resp["partialSuccess"]["rejectedDataPoints"], "1", "{body}");
    assert!(
        resp["partialSuccess"]["errorMessage"]
            .as_str()
            .unwrap()
            .contains("delta_temporality"),
        "{body}"
    );
    let (l, v) = one(&addr, "temperature_celsius");
    assert_eq!(
        (l["job"].as_str(), l["room"].as_str(), v.as_str()),
        (Some("api"), Some("lab"), "21.5")
    );

    // Gzip JSON.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(json.replace("lab", "hall").as_bytes())
        .unwrap();
    let (status, body) = post(
        &addr,
        "application/json; charset=utf-8",
        Some("gzip"),
        &gz.finish().unwrap(),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(query(&addr, "temperature_celsius").len(), 2);

    // Malformed bodies: 400 naming the problem, nothing stored.
    let before = query(&addr, "{__name__=~\".+\"}").len();
    for (ct, enc, body) in [
        ("application/x-protobuf", None, &b"\xff\xff\xff"[..]),
        ("application/json", None, &b"{\"resourceMetrics\": 7}"[..]),
        ("application/json", Some("gzip"), &b"not gzip"[..]),
    ] {
        let (status, text) = post(&addr, ct, enc, body);
        assert_eq!(status, 400, "{ct} {enc:?}: {text}");
        assert!(text.contains("decoding") || text.contains("gzip"), "{text}");
    }
    assert_eq!(query(&addr, "{__name__=~\".+\"}").len(), before);
    // Unsupported media type and encoding: 415.
    assert_eq!(post(&addr, "text/plain", None, b"x").0, 415);
    assert_eq!(post(&addr, "application/json", Some("br"), b"x").0, 415);
    p.assert_alive(&addr);
}

/// `start_time_unix_nano` with `--enable-created-timestamp-zero-ingestion`:
/// a zero sample at the start time of a cumulative sum, on every series of
/// a classic histogram (`_count`, `_sum`, each `_bucket`), and a zero native
/// histogram of the same schema for an exponential histogram (Prometheus 3
/// with created-timestamp zero ingestion); none for a gauge. A second
/// export of the same lifetime adds no zero and refuses nothing.
#[test]
fn start_time_becomes_zero_sample_with_created_timestamp_flag() {
    let dir = tempfile::tempdir().unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let mut p = start_tidemark_with(
        &addr,
        &dir.path().join("data"),
        &["--enable-created-timestamp-zero-ingestion"],
    );
    wait_ready(&mut p, &addr, Duration::from_secs(60));
    let t0 = now_nanos() / 1_000_000 * 1_000_000 - 30_000_000_000;
    let start = t0 - 60_000_000_000;
    let body = |t: u128, n: u64| {
        format!(
            r#"{{"resourceMetrics":[{{"resource":{{"attributes":[
            {{"key":"service.name","value":{{"stringValue":"api"}}}}]}},
          "scopeMetrics":[{{"metrics":[
            {{"name":"temperature","gauge":{{"dataPoints":[
              {{"startTimeUnixNano":"{start}","timeUnixNano":"{t}","asDouble":21.5}}]}}}},
            {{"name":"jobs.done","sum":{{"aggregationTemporality":2,"isMonotonic":true,
              "dataPoints":[{{"startTimeUnixNano":"{start}","timeUnixNano":"{t}","asInt":"{n}"}}]}}}},
            {{"name":"latency","histogram":{{"aggregationTemporality":2,"dataPoints":[
              {{"startTimeUnixNano":"{start}","timeUnixNano":"{t}","count":"{n}","sum":4.5,
                "bucketCounts":["1","{m}"],"explicitBounds":[1.0]}}]}}}},
            {{"name":"sizes","exponentialHistogram":{{"aggregationTemporality":2,"dataPoints":[
              {{"startTimeUnixNano":"{start}","timeUnixNano":"{t}","count":"{n}","sum":9.0,
                "scale":2,"zeroThreshold":0.5,"positive":{{"offset":1,"bucketCounts":["{n}"]}}}}]}}}}
          ]}}]}}]}}"#,
            m = n - 1
        )
    };
    for (t, n) in [(t0, 3), (t0 + 10_000_000_000, 5)] {
        let (status, text) = post(&addr, "application/json", None, body(t, n).as_bytes());
        assert_eq!(status, 200, "{text}");
        let resp: Value = serde_json::from_str(&text).unwrap();
        assert!(resp.get("partialSuccess").is_none(), "{text}");
    }
    let count = |q: &str| {
        query(&addr, &format!("count_over_time({q}[5m])"))
            .into_iter()
            .map(|(l, v)| (l["le"].as_str().unwrap_or("").to_string(), v))
            .collect::<Vec<_>>()
    };
    let three = |le: &str| vec![(le.to_string(), "3".to_string())];
    assert_eq!(count("jobs_done_total"), three(""));
    assert_eq!(count("latency_count"), three(""));
    assert_eq!(count("latency_sum"), three(""));
    assert_eq!(
        count("latency_bucket"),
        [three("+Inf"), three("1")].concat()
    );
    assert_eq!(count("sizes"), three(""));
    assert_eq!(count("temperature"), vec![(String::new(), "2".to_string())]);
    for q in [
        "jobs_done_total",
        "latency_count",
        "latency_sum",
        "latency_bucket",
    ] {
        for (l, v) in query(&addr, &format!("min_over_time({q}[5m])")) {
            assert_eq!(v, "0", "{q} {l}");
        }
    }
    // Six zero samples counted: the sum, the histogram's four series, the
    // exponential histogram; none at the second export.
    assert_eq!(
        http::metric(&addr, "tidemark_created_timestamp_zero_samples_total"),
        Some(6.0)
    );
    // The zero native histogram: no observations, the same schema.
    let at = format!("{:.3}", (start / 1_000_000) as f64 / 1000.0);
    let (status, text) = http::get(&addr, &format!("/api/v1/query?query=sizes&time={at}")).unwrap();
    assert_eq!(status, 200, "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    let h = &v["data"]["result"][0]["histogram"][1];
    assert_eq!(
        (h["count"].as_str(), h["sum"].as_str()),
        (Some("0"), Some("0")),
        "{text}"
    );
    p.assert_alive(&addr);
}

fn start_with(extra: &[&str]) -> (tempfile::TempDir, String, Proc) {
    let dir = tempfile::tempdir().unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let mut p = start_tidemark_with(&addr, &dir.path().join("data"), extra);
    wait_ready(&mut p, &addr, Duration::from_secs(60));
    (dir, addr, p)
}

fn gzip(raw: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(raw).unwrap();
    gz.finish().unwrap()
}

/// Appends protobuf field `field` (length-delimited) holding `body`.
fn field(out: &mut Vec<u8>, field: u64, body: &[u8]) {
    let mut varint = |mut v: u64| loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            break;
        }
        out.push(b | 0x80);
    };
    varint(field << 3 | 2);
    varint(body.len() as u64);
    out.extend_from_slice(body);
}

/// A request of one gauge `g` with `n` empty data points (two bytes each on
/// the wire, about a hundred once decoded), built by hand: what a hostile
/// client sends, not what an SDK would.
fn empty_points(n: usize) -> Vec<u8> {
    let mut gauge = Vec::with_capacity(2 * n);
    for _ in 0..n {
        field(&mut gauge, 1, &[]);
    }
    let mut metric = Vec::new();
    field(&mut metric, 1, b"g");
    field(&mut metric, 5, &gauge);
    let mut scope = Vec::new();
    field(&mut scope, 2, &metric);
    let mut resource = Vec::new();
    field(&mut resource, 2, &scope);
    let mut req = Vec::new();
    field(&mut req, 1, &resource);
    req
}

/// Every stored series of any name.
fn all_series(addr: &str) -> usize {
    query(addr, "{__name__=~\".+\"}").len()
}

/// Whole-request limits: a small gzip body inflating past
/// `--max-write-decompressed-bytes`, a protobuf of empty points past
/// `--max-write-samples-per-request` (refused before it is decoded), a JSON
/// body past its bound of objects, more series than
/// `--max-write-series-per-request`: 400 naming the flag, nothing stored.
#[test]
fn hostile_whole_request_limits_refuse_with_400_naming_the_flag() {
    let (_dir, addr, mut p) = start_with(&[
        "--max-write-decompressed-bytes=8388608",
        "--max-write-series-per-request=50",
        // Bounds JSON bodies at 1M + 2 x 100k + 100k + 100k = 1.4M values.
        "--max-write-labels-per-request=100000",
    ]);
    // 64 MiB of zeros gzip to about 64 KiB.
    let bomb = gzip(&vec![0u8; 64 << 20]);
    assert!(bomb.len() < 128 << 10, "{}", bomb.len());
    let (status, text) = post(&addr, "application/x-protobuf", Some("gzip"), &bomb);
    assert_eq!(status, 400, "{text}");
    assert!(
        text.contains("8388608") && text.contains("--max-write-decompressed-bytes"),
        "{text}"
    );
    // 1.5 million empty points: 3 MB on the wire (under the decompressed
    // limit), about 150 MB if decoded.
    let body = empty_points(1_500_000);
    assert!(body.len() < 8 << 20);
    let (status, text) = post(&addr, "application/x-protobuf", Some("gzip"), &gzip(&body));
    assert_eq!(status, 400, "{text}");
    assert!(
        text.contains("1000000") && text.contains("--max-write-samples-per-request"),
        "{text}"
    );
    // JSON: 1.5 million empty objects in one array (4.5 MB).
    let mut json = String::from(r#"{"resourceMetrics":["#);
    json.push_str(&vec!["{}"; 1_500_000].join(","));
    json.push_str("]}");
    let (status, text) = post(
        &addr,
        "application/json",
        Some("gzip"),
        &gzip(json.as_bytes()),
    );
    assert_eq!(status, 400, "{text}");
    assert!(
        text.contains("1400000") && text.contains("objects and arrays"),
        "{text}"
    );
    // 60 series in one request, past --max-write-series-per-request=50.
    let t = now_nanos();
    let points: Vec<String> = (0..60)
        .map(|i| {
            format!(
                r#"{{"timeUnixNano":"{t}","asDouble":1,"attributes":[{{"key":"i","value":{{"stringValue":"{i}"}}}}]}}"#
            )
        })
        .collect();
    let json = format!(
        r#"{{"resourceMetrics":[{{"scopeMetrics":[{{"metrics":[{{"name":"many","gauge":{{"dataPoints":[{}]}}}}]}}]}}]}}"#,
        points.join(",")
    );
    let (status, text) = post(&addr, "application/json", None, json.as_bytes());
    assert_eq!(status, 400, "{text}");
    assert!(
        text.contains("50") && text.contains("--max-write-series-per-request"),
        "{text}"
    );
    assert_eq!(all_series(&addr), 0);
    let (_, metrics) = http::get(&addr, "/metrics").unwrap();
    assert!(
        metrics.contains("tidemark_otlp_requests_total{result=\"refused\"} 4"),
        "{metrics}"
    );
    p.assert_alive(&addr);
}

/// Per-series limits (labels per series, label name and value length) and
/// the future limit refuse only the offending series, in
/// `partial_success` naming the flag; the rest is stored. Metadata over
/// `--max-metadata-text-len` is dropped, its samples kept.
#[test]
fn hostile_per_series_limits_answer_partial_success() {
    let (_dir, addr, mut p) = start_with(&[
        "--max-labels-per-timeseries=4",
        "--max-label-value-len=64",
        "--max-label-name-len=32",
        "--max-metadata-text-len=100",
    ]);
    let t = now_nanos();
    let future = t + 3_600_000_000_000;
    let attr = |k: &str, v: &str| format!(r#"{{"key":"{k}","value":{{"stringValue":"{v}"}}}}"#);
    let point = |t: u128, attrs: Vec<String>| {
        format!(
            r#"{{"timeUnixNano":"{t}","asDouble":1,"attributes":[{}]}}"#,
            attrs.join(",")
        )
    };
    let long_value = "v".repeat(65);
    let long_name = "n".repeat(33);
    let points = [
        point(t, vec![attr("ok", "1")]),
        point(t, vec![attr("ok", "2"), attr("v", &long_value)]),
        point(t, vec![attr("ok", "3"), attr(&long_name, "x")]),
        point(
            t,
            vec![
                attr("ok", "4"),
                attr("a", "1"),
                attr("b", "1"),
                attr("c", "1"),
            ],
        ),
        point(future, vec![attr("ok", "5")]),
    ];
    let json = format!(
        r#"{{"resourceMetrics":[{{"scopeMetrics":[{{"metrics":[{{"name":"g","description":"{}","gauge":{{"dataPoints":[{}]}}}}]}}]}}]}}"#,
        "h".repeat(101),
        points.join(",")
    );
    let (status, text) = post(&addr, "application/json", None, json.as_bytes());
    assert_eq!(status, 200, "{text}");
    let resp: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(resp["partialSuccess"]["rejectedDataPoints"], "4", "{text}");
    let message = resp["partialSuccess"]["errorMessage"].as_str().unwrap();
    for want in [
        "label_value_too_long=1",
        "label_name_too_long=1",
        "too_many_labels=1",
        "too_far_in_future=1",
        "--max-label-value-len",
        "metadata entries dropped",
        "--max-metadata-text-len",
    ] {
        assert!(message.contains(want), "{want}: {message}");
    }
    let stored = query(&addr, "g");
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert_eq!(stored[0].0["ok"], "1");
    let (_, md) = http::get(&addr, "/api/v1/metadata?metric=g").unwrap();
    let md: Value = serde_json::from_str(&md).unwrap();
    assert!(md["data"].get("g").is_none(), "{md}");
    p.assert_alive(&addr);
}

/// Prometheus 3's `otlp` settings as flags, with the Python SDK's export
/// (resource `service.*` + `deployment.environment`, scope `tidemark-test`
/// 1.2.3): `promote_resource_attributes` puts `deployment_environment` on
/// every series (`addPromotedAttributes`), `promote_scope_metadata` adds
/// `otel_scope_name`/`otel_scope_version` (`setScopeContext`; no schema URL
/// is set by the SDK, so none), `keep_identifying_resource_attributes`
/// keeps `service_*` on `target_info` (`addResourceTargetInfo`), and
/// `NoUTF8EscapingWithSuffixes` keeps dots in names and label names while
/// adding suffixes (`otlptranslator` `buildMetricName`). Rules cited from
/// prometheus/prometheus `storage/remote/otlptranslator/prometheusremotewrite/`
/// at d15adb9ad7e5d9fbde3a9a8f30200593a5a14d86.
#[test]
fn otlp_flags_translate_as_prometheus_settings() {
    let (_dir, addr, mut p) = start_with(&[
        "--otlp.translation-strategy=NoUTF8EscapingWithSuffixes",
        "--otlp.promote-resource-attributes=deployment.environment",
        "--otlp.promote-scope-metadata",
        "--otlp.keep-identifying-resource-attributes",
    ]);
    send_with_sdk(&addr, "plain");
    let (l, v) = one(&addr, r#"{__name__="http.server.requests_total"}"#);
    assert_eq!(v, "5");
    assert_eq!(l["http.method"], "GET", "{l}");
    assert_eq!(l["job"], "shop/checkout", "{l}");
    assert_eq!(l["deployment.environment"], "test", "{l}");
    assert_eq!(l["otel_scope_name"], "tidemark-test", "{l}");
    assert_eq!(l["otel_scope_version"], "1.2.3", "{l}");
    assert!(l.get("otel_scope_schema_url").is_none(), "{l}");
    assert_eq!(one(&addr, r#"{__name__="memory.usage_bytes"}"#).1, "1024");
    // Prometheus 3's quoted UTF-8 name syntax reaches the same series.
    assert_eq!(one(&addr, r#"{"http.server.requests_total"}"#).1, "5");
    let (l, _) = one(&addr, "target_info");
    assert_eq!(l["service.name"], "checkout", "{l}");
    assert_eq!(l["service.namespace"], "shop", "{l}");
    assert_eq!(l["service.instance.id"], "pod-1", "{l}");
    assert!(l.get("otel_scope_name").is_none(), "{l}");
    p.assert_alive(&addr);

    // NoTranslation: names exactly as the SDK sends them.
    let (_dir2, addr2, mut p2) = start_with(&["--otlp.translation-strategy=NoTranslation"]);
    send_with_sdk(&addr2, "plain");
    assert_eq!(one(&addr2, r#"{__name__="http.server.requests"}"#).1, "5");
    assert_eq!(
        one(&addr2, r#"{__name__="http.server.duration_count"}"#).1,
        "3"
    );
    p2.assert_alive(&addr2);
}

/// Delta temporality: refused by default (the first test); with
/// `--otlp.native-delta-ingestion` (Prometheus's experimental
/// `otlp-native-delta-ingestion`) stored as sent, metadata type `unknown`.
#[test]
fn native_delta_ingestion_stores_the_sdk_delta_counter() {
    let (_dir, addr, mut p) = start_with(&["--otlp.native-delta-ingestion"]);
    send_with_sdk(&addr, "delta");
    assert_eq!(one(&addr, "delta_requests_total").1, "3");
    let (_, md) = http::get(&addr, "/api/v1/metadata?metric=delta_requests_total").unwrap();
    let md: Value = serde_json::from_str(&md).unwrap();
    assert_eq!(
        md["data"]["delta_requests_total"][0]["type"], "unknown",
        "{md}"
    );
    p.assert_alive(&addr);
}
