//! Grafana's Prometheus datasource, replayed against the `tidemark` binary
//! on 127.0.0.1: the exact requests it sends when a user saves the
//! datasource (health check, build-info heuristics), opens Explore and
//! browses metrics (names, label names and values with `match[]`, the
//! series fallback, metadata), renders a dashboard (step-aligned
//! `query_range`, instant queries, exemplars) and when alerting discovers
//! the backend (`rules`, `status/flags`). Methods, parameters, form bodies
//! and headers are Grafana's (`pkg/promlib` and `packages/grafana-prometheus`,
//! see `../shared/notes/http-api-and-grafana.md` §2.1): POST as
//! `application/x-www-form-urlencoded` with repeated `match[]` keys, GET
//! for `label/<name>/values`, `metadata`, `rules` and `status/*`,
//! `User-Agent: Grafana/…`, `Accept-Encoding: gzip` (bodies are decoded
//! when the server compresses them).
//!
//! Every answer must be a 200 with a body of the shape Grafana parses:
//! `status:"success"`, arrays never `null`, sample and exemplar values as
//! strings Go's `strconv.ParseFloat` accepts, timestamps as JSON numbers of
//! unix seconds with at most millisecond precision, and a semver
//! `data.version` without the `features` map that would make Grafana treat
//! the backend as Mimir.

mod common;

use std::io::Read;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use common::http;
use common::proc::{free_port, start_tidemark, wait_ready};
use prost::Message;
use serde_json::Value;
use tidemark::ingest::proto::prometheus as pb;

const USER_AGENT: &str = "Grafana/11.3.0";
const FORM: &str = "application/x-www-form-urlencoded";
/// Data interval and the dashboard's step.
const SCRAPE_S: i64 = 15;
const STEP_S: i64 = 30;

fn label(n: &str, v: &str) -> pb::Label {
    pb::Label {
        name: Bytes::copy_from_slice(n.as_bytes()),
        value: Bytes::copy_from_slice(v.as_bytes()),
    }
}

/// 30 minutes at 15 s up to `end_ms` of two request counters (with an
/// exemplar on every sample), a classic histogram and `up`, plus metadata
/// for each family, remote-written as Prometheus would.
fn load(addr: &str, end_ms: i64) {
    let points = 30 * 60 / SCRAPE_S;
    let ts = |k: i64| end_ms - (points - 1 - k) * SCRAPE_S * 1000;
    let mut timeseries = Vec::new();
    for (i, instance) in ["app-0:8080", "app-1:8080"].iter().enumerate() {
        let id = || vec![label("instance", instance), label("job", "app")];
        let mut counter = id();
        counter.insert(0, label("__name__", "grafana_requests_total"));
        counter.insert(1, label("code", "200"));
        timeseries.push(pb::TimeSeries {
            labels: counter,
            samples: (0..points)
                .map(|k| pb::Sample {
                    value: (k * (3 + i as i64)) as f64,
                    timestamp: ts(k),
                })
                .collect(),
            exemplars: (0..points)
                .map(|k| pb::Exemplar {
                    labels: vec![label("trace_id", &format!("{i:x}{k:08x}"))],
                    value: 0.25 + k as f64 / 100.0,
                    timestamp: ts(k),
                })
                .collect(),
            ..Default::default()
        });
        for (le, share) in [("0.1", 1), ("0.5", 2), ("1", 3), ("+Inf", 4)] {
            let mut l = vec![label("__name__", "grafana_latency_seconds_bucket")];
            l.extend(id());
            l.insert(2, label("le", le));
            timeseries.push(pb::TimeSeries {
                labels: l,
                samples: (0..points)
                    .map(|k| pb::Sample {
                        value: (k * share) as f64,
                        timestamp: ts(k),
                    })
                    .collect(),
                ..Default::default()
            });
        }
        let mut up = vec![label("__name__", "up")];
        up.extend(id());
        timeseries.push(pb::TimeSeries {
            labels: up,
            samples: (0..points)
                .map(|k| pb::Sample {
                    value: 1.0,
                    timestamp: ts(k),
                })
                .collect(),
            ..Default::default()
        });
    }
    let md = |name: &str, ty: pb::metric_metadata::MetricType, help: &str, unit: &str| {
        pb::MetricMetadata {
            r#type: ty as i32,
            metric_family_name: name.into(),
            help: help.into(),
            unit: unit.into(),
        }
    };
    use pb::metric_metadata::MetricType;
    let req = pb::WriteRequest {
        timeseries,
        metadata: vec![
            md(
                "grafana_requests_total",
                MetricType::Counter,
                "Requests served.",
                "",
            ),
            md(
                "grafana_latency_seconds",
                MetricType::Histogram,
                "Request latency.",
                "seconds",
            ),
            md("up", MetricType::Gauge, "Target reachable.", ""),
        ],
    };
    let body = snap::raw::Encoder::new()
        .compress_vec(&req.encode_to_vec())
        .unwrap();
    let r = http::request(
        addr,
        "POST",
        "/api/v1/write",
        &[
            ("Content-Type", "application/x-protobuf"),
            ("Content-Encoding", "snappy"),
            ("X-Prometheus-Remote-Write-Version", "0.1.0"),
        ],
        &body,
    );
    assert!(
        matches!(r, Some((204, _))),
        "remote write: {:?}",
        r.map(|(s, b)| (s, String::from_utf8_lossy(&b).into_owned()))
    );
}

/// A Grafana request's answer: its JSON body and whether it came gzipped.
struct Answer {
    json: Value,
    gzipped: bool,
}

/// Sends a request the way Grafana does; asserts a 200 JSON success and
/// returns the (decoded) body.
fn grafana(addr: &str, method: &str, path: &str, form: &[(&str, String)]) -> Answer {
    let body: String = form
        .iter()
        .map(|(k, v)| format!("{}={}", http::encode(k), http::encode(v)))
        .collect::<Vec<_>>()
        .join("&");
    let mut headers = vec![("User-Agent", USER_AGENT), ("Accept-Encoding", "gzip")];
    if method == "POST" {
        headers.push(("Content-Type", FORM));
    }
    let what = format!("{method} {path} {body}");
    let r = http::request_full(addr, method, path, &headers, body.as_bytes())
        .unwrap_or_else(|| panic!("{what}: no answer"));
    let gzipped = r.header("content-encoding") == Some("gzip");
    let raw = if gzipped {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&r.body[..])
            .read_to_end(&mut out)
            .unwrap_or_else(|e| panic!("{what}: bad gzip: {e}"));
        out
    } else {
        r.body.clone()
    };
    let text = String::from_utf8(raw).unwrap_or_else(|e| panic!("{what}: not UTF-8: {e}"));
    assert_eq!(r.status, 200, "{what}: {text}");
    assert!(
        r.header("content-type")
            .is_some_and(|c| c.starts_with("application/json")),
        "{what}: content-type {:?}",
        r.header("content-type")
    );
    let json: Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{what}: not JSON ({e}): {text}"));
    assert_eq!(json["status"], "success", "{what}: {text}");
    assert!(
        json.get("data").is_some_and(|d| !d.is_null()),
        "{what}: data missing or null: {text}"
    );
    for key in ["warnings", "infos"] {
        if let Some(w) = json.get(key) {
            assert!(
                w.as_array().is_some_and(|a| a.iter().all(Value::is_string)),
                "{what}: {key} must be an array of strings: {text}"
            );
        }
    }
    Answer { json, gzipped }
}

/// A sample value as Grafana reads it: a string Go's ParseFloat accepts.
fn value(v: &Value, what: &str) -> f64 {
    let s = v
        .as_str()
        .unwrap_or_else(|| panic!("{what}: value {v} is not a string"));
    s.parse()
        .unwrap_or_else(|_| panic!("{what}: value {s:?} is not a float"))
}

/// A timestamp as Grafana reads it: a JSON number of unix seconds, which
/// it truncates to milliseconds (so no finer digits may be lost).
fn timestamp(v: &Value, what: &str) -> f64 {
    let t = v
        .as_f64()
        .unwrap_or_else(|| panic!("{what}: timestamp {v} is not a number"));
    let ms = t * 1000.0;
    assert!(
        (ms - ms.round()).abs() < 1e-3,
        "{what}: timestamp {t} finer than a millisecond"
    );
    t
}

fn string_map(v: &Value, what: &str) {
    let o = v
        .as_object()
        .unwrap_or_else(|| panic!("{what}: {v} is not an object"));
    assert!(
        o.values().all(Value::is_string),
        "{what}: label values must be strings: {v}"
    );
}

fn string_array<'a>(v: &'a Value, what: &str) -> Vec<&'a str> {
    v.as_array()
        .unwrap_or_else(|| panic!("{what}: {v} is not an array"))
        .iter()
        .map(|s| {
            s.as_str()
                .unwrap_or_else(|| panic!("{what}: {s} is not a string"))
        })
        .collect()
}

/// A `matrix` as promlib's converter reads it; returns its series count.
fn check_matrix(data: &Value, start: i64, end: i64, step: i64, what: &str) -> usize {
    assert_eq!(data["resultType"], "matrix", "{what}: {data}");
    let result = data["result"].as_array().expect("result array");
    for s in result {
        string_map(&s["metric"], what);
        let values = s["values"].as_array().expect("values array");
        assert!(!values.is_empty(), "{what}: a series without values: {s}");
        for p in values {
            let t = timestamp(&p[0], what);
            value(&p[1], what);
            let t = t as i64;
            assert!(
                (start..=end).contains(&t) && (t - start) % step == 0,
                "{what}: {t} not on the step grid"
            );
        }
    }
    result.len()
}

/// A `vector` as promlib's converter reads it; returns its series count.
fn check_vector(data: &Value, time: f64, what: &str) -> usize {
    assert_eq!(data["resultType"], "vector", "{what}: {data}");
    let result = data["result"].as_array().expect("result array");
    for s in result {
        string_map(&s["metric"], what);
        assert_eq!(timestamp(&s["value"][0], what), time, "{what}");
        value(&s["value"][1], what);
    }
    result.len()
}

fn now_s() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

#[test]
fn grafana_datasource_requests_get_well_formed_answers() {
    let dir = tempfile::tempdir().unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let mut tm = start_tidemark(&addr, &dir.path().join("data"));
    wait_ready(&mut tm, &addr, Duration::from_secs(30));
    let now = now_s();
    load(&addr, now * 1000);
    let g = |method: &str, path: &str, form: &[(&str, String)]| grafana(&addr, method, path, form);

    // "Save & test": the health check, then build-info heuristics and
    // version detection.
    let r = g(
        "POST",
        "/api/v1/query",
        &[("query", "1+1".into()), ("time", "4".into())],
    );
    assert_eq!(
        r.json["data"],
        serde_json::json!({"resultType": "scalar", "result": [4, "2"]})
    );
    let r = g("GET", "/api/v1/status/buildinfo", &[]);
    let version = r.json["data"]["version"].as_str().expect("version string");
    let semver: Vec<&str> = version
        .split(['-', '+'])
        .next()
        .unwrap()
        .split('.')
        .collect();
    assert!(
        semver.len() == 3 && semver.iter().all(|p| p.parse::<u64>().is_ok()),
        "buildinfo version {version:?} is not semver"
    );
    assert!(
        r.json["data"].get("features").is_none(),
        "a features map makes Grafana treat the backend as Mimir: {}",
        r.json
    );

    // Explore's metric browser: the cache-snapped window, the 40000 series
    // limit and the metric of the current query as match[].
    let (start, end) = ((now - 3600).to_string(), (now + 60).to_string());
    let window = |extra: &[(&'static str, String)]| -> Vec<(&'static str, String)> {
        let mut f = extra.to_vec();
        f.push(("start", start.clone()));
        f.push(("end", end.clone()));
        f.push(("limit", "40000".into()));
        f
    };
    let query_string = |form: &[(&str, String)]| -> String {
        form.iter()
            .map(|(k, v)| format!("{}={}", http::encode(k), http::encode(v)))
            .collect::<Vec<_>>()
            .join("&")
    };
    let r = g(
        "GET",
        &format!(
            "/api/v1/label/__name__/values?{}",
            query_string(&window(&[]))
        ),
        &[],
    );
    let names = string_array(&r.json["data"], "metric names");
    for want in [
        "grafana_latency_seconds_bucket",
        "grafana_requests_total",
        "up",
    ] {
        assert!(names.contains(&want), "metric names {names:?} lack {want}");
    }
    let r = g(
        "POST",
        "/api/v1/labels",
        &window(&[("match[]", "grafana_requests_total".into())]),
    );
    assert_eq!(
        string_array(&r.json["data"], "label names"),
        ["__name__", "code", "instance", "job"]
    );
    let r = g(
        "POST",
        "/api/v1/labels",
        &window(&[
            ("match[]", "grafana_requests_total".into()),
            ("match[]", "{__name__=\"up\"}".into()),
        ]),
    );
    assert_eq!(
        string_array(&r.json["data"], "label names"),
        ["__name__", "code", "instance", "job"]
    );
    let r = g(
        "GET",
        &format!(
            "/api/v1/label/job/values?{}",
            query_string(&window(&[(
                "match[]",
                "{__name__=\"grafana_requests_total\"}".into()
            )]))
        ),
        &[],
    );
    assert_eq!(string_array(&r.json["data"], "job values"), ["app"]);
    let r = g(
        "GET",
        &format!(
            "/api/v1/label/le/values?{}",
            query_string(&window(&[(
                "match[]",
                "grafana_latency_seconds_bucket{job=\"app\"}".into()
            )]))
        ),
        &[],
    );
    assert_eq!(
        string_array(&r.json["data"], "le values"),
        ["+Inf", "0.1", "0.5", "1"]
    );
    // "Use series endpoint" / old-Prometheus path: every series.
    let r = g(
        "POST",
        "/api/v1/series",
        &window(&[("match[]", "{__name__!=\"\"}".into())]),
    );
    let series = r.json["data"].as_array().expect("series array");
    assert_eq!(series.len(), 2 * (1 + 4 + 1), "{}", r.json);
    for s in series {
        string_map(s, "series");
        assert!(s["__name__"].is_string(), "series without a name: {s}");
    }
    assert!(
        r.gzipped,
        "a large answer to Accept-Encoding: gzip is gzipped"
    );
    // Metadata: old Grafana fetches it all, newer ones with a limit.
    for path in ["/api/v1/metadata", "/api/v1/metadata?limit=1000"] {
        let r = g("GET", path, &[]);
        let data = r.json["data"].as_object().expect("metadata object");
        assert_eq!(data.len(), 3, "{path}: {}", r.json);
        for (metric, entries) in data {
            let entries = entries.as_array().expect("metadata array");
            assert!(!entries.is_empty(), "{metric}");
            for e in entries {
                for key in ["type", "help", "unit"] {
                    assert!(e[key].is_string(), "{path}: {metric}.{key}: {e}");
                }
            }
        }
        assert_eq!(data["grafana_latency_seconds"][0]["type"], "histogram");
    }

    // Dashboard render: start/end aligned down to the step, float seconds.
    let (rstart, rend) = ((now - 1800) / STEP_S * STEP_S, now / STEP_S * STEP_S);
    for (q, want) in [
        ("sum by (instance) (rate(grafana_requests_total[1m]))", 2),
        (
            "histogram_quantile(0.95, sum by (le) (rate(grafana_latency_seconds_bucket[2m])))",
            1,
        ),
        ("up == 0", 0),
    ] {
        let r = g(
            "POST",
            "/api/v1/query_range",
            &[
                ("query", q.into()),
                ("start", rstart.to_string()),
                ("end", rend.to_string()),
                ("step", STEP_S.to_string()),
                ("timeout", "60s".into()),
            ],
        );
        assert_eq!(
            check_matrix(&r.json["data"], rstart, rend, STEP_S, q),
            want,
            "{q}: {}",
            r.json
        );
    }
    // Fractional-second form of the same parameters.
    let r = g(
        "POST",
        "/api/v1/query_range",
        &[
            ("query", "grafana_requests_total".into()),
            ("start", format!("{rstart}.000")),
            ("end", format!("{rend}.0")),
            ("step", "30.0".into()),
        ],
    );
    assert_eq!(
        check_matrix(&r.json["data"], rstart, rend, STEP_S, "float form"),
        2
    );
    // Instant query (table panel, alert rule) at the range end.
    let r = g(
        "POST",
        "/api/v1/query",
        &[
            (
                "query",
                "sum by (job) (increase(grafana_requests_total[5m]))".into(),
            ),
            ("time", rend.to_string()),
        ],
    );
    assert_eq!(check_vector(&r.json["data"], rend as f64, "instant"), 1);

    // Exemplars: the frontend probe (start/end in milliseconds, sic), its
    // GET retry, and the exemplar query of a panel with exemplars on.
    let probe = [
        ("query", "test".to_string()),
        ("start", ((now - 3600) * 1000).to_string()),
        ("end", (now * 1000).to_string()),
    ];
    let r = g("POST", "/api/v1/query_exemplars", &probe);
    assert!(r.json["data"].is_array(), "{}", r.json);
    let r = g(
        "GET",
        &format!("/api/v1/query_exemplars?{}", query_string(&probe)),
        &[],
    );
    assert!(r.json["data"].is_array(), "{}", r.json);
    let r = g(
        "POST",
        "/api/v1/query_exemplars",
        &[
            (
                "query",
                "sum by (instance) (rate(grafana_requests_total[1m]))".into(),
            ),
            ("start", rstart.to_string()),
            ("end", rend.to_string()),
        ],
    );
    let groups = r.json["data"].as_array().expect("exemplar array");
    assert_eq!(groups.len(), 2, "{}", r.json);
    for g in groups {
        string_map(&g["seriesLabels"], "seriesLabels");
        let exemplars = g["exemplars"].as_array().expect("exemplars array");
        assert!(!exemplars.is_empty(), "{g}");
        for e in exemplars {
            string_map(&e["labels"], "exemplar labels");
            value(&e["value"], "exemplar value");
            let t = timestamp(&e["timestamp"], "exemplar timestamp");
            assert!(
                (rstart as f64..=rend as f64).contains(&t),
                "exemplar at {t} outside [{rstart}, {rend}]"
            );
        }
    }

    // Recording-rule expansion and alerting discovery.
    let r = g("GET", "/api/v1/rules", &[]);
    assert!(r.json["data"]["groups"].is_array(), "{}", r.json);
    let r = g("GET", "/api/v1/status/flags", &[]);
    string_map(&r.json["data"], "flags");
}
