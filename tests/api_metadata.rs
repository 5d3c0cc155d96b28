//! The metadata side of the API in-process: series, labels, label values
//! (with `match[]`, time windows, limits, `U__` names, GET-only), metric
//! metadata and exemplars from remote write, and the status endpoints
//! Grafana probes (buildinfo, flags, config, runtimeinfo, tsdb, rules,
//! alerts).

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use bytes::Bytes;
use common::api::{api, api_with, enc, fixture, get, post, send};
use prost::Message;
use serde_json::json;
use tidemark::api::ApiOptions;
use tidemark::ingest::proto::prometheus as v1;

const UP_A: &str = r#"{"__name__":"up","instance":"i1","job":"a"}"#;
const UP_B: &str = r#"{"__name__":"up","instance":"i2","job":"b"}"#;

#[tokio::test]
async fn series_requires_match_and_unions_selectors() {
    let a = fixture();
    let r = get(&a.app, "/api/v1/series").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        r.body,
        r#"{"status":"error","errorType":"bad_data","error":"no match[] parameter provided"}"#
    );
    let m1 = enc(r#"up{job="a"}"#);
    let m2 = enc(r#"{job="b"}"#);
    let want = format!(r#"{{"status":"success","data":[{UP_A},{UP_B}]}}"#);
    let r = get(&a.app, &format!("/api/v1/series?match[]={m1}&match[]={m2}")).await;
    assert_eq!(r.body, want);
    // Brackets percent-encoded, as browsers and Go clients send them.
    let r = get(
        &a.app,
        &format!("/api/v1/series?match%5B%5D={m1}&match%5B%5D={m2}"),
    )
    .await;
    assert_eq!(r.body, want);
    let r = post(
        &a.app,
        "/api/v1/series",
        &format!("match[]={m1}&match[]={m2}&start=1700000000&end=1700000600"),
    )
    .await;
    assert_eq!(r.body, want);
    // Overlapping selectors list each series once.
    let r = get(&a.app, &format!("/api/v1/series?match[]=up&match[]={m1}")).await;
    assert_eq!(r.body, want);
    // Nothing matches, or the window has no data: [] not null.
    for path in [
        "/api/v1/series?match[]=nothing".to_string(),
        "/api/v1/series?match[]=up&start=2023-11-15T00:00:00Z".to_string(),
        "/api/v1/series?match[]=up&end=1600000000".to_string(),
    ] {
        let r = get(&a.app, &path).await;
        assert_eq!(r.body, r#"{"status":"success","data":[]}"#, "{path}");
    }
    let r = get(&a.app, "/api/v1/series?match[]=up&limit=1").await;
    assert_eq!(
        r.body,
        format!(
            r#"{{"status":"success","data":[{UP_A}],"warnings":["results truncated due to limit"]}}"#
        )
    );
}

#[tokio::test]
async fn match_params_must_be_series_selectors() {
    let a = fixture();
    for bad in ["up[5m]", "sum(up)", "1", "up{", "{job=~\".*\"}"] {
        for path in [
            "/api/v1/series",
            "/api/v1/labels",
            "/api/v1/label/job/values",
        ] {
            let r = get(&a.app, &format!("{path}?match[]={}", enc(bad))).await;
            assert_eq!(
                r.status,
                StatusCode::BAD_REQUEST,
                "{path} {bad}: {}",
                r.body
            );
            let v = r.json();
            assert_eq!(v["errorType"], "bad_data");
            assert!(
                v["error"]
                    .as_str()
                    .unwrap()
                    .starts_with("invalid parameter \"match[]\": "),
                "{}",
                r.body
            );
        }
    }
    let r = get(&a.app, "/api/v1/series?match[]=up&start=yesterday").await;
    assert_eq!(
        r.json()["error"],
        "invalid parameter \"start\": cannot parse \"yesterday\" to a valid timestamp"
    );
}

#[tokio::test]
async fn label_names_with_and_without_match() {
    let a = fixture();
    let r = get(&a.app, "/api/v1/labels").await;
    assert_eq!(
        r.body,
        r#"{"status":"success","data":["__name__","http.status","instance","job"]}"#
    );
    let r = post(&a.app, "/api/v1/labels", "match[]=up").await;
    assert_eq!(
        r.body,
        r#"{"status":"success","data":["__name__","instance","job"]}"#
    );
    let r = get(
        &a.app,
        &format!(
            "/api/v1/labels?match[]={}&match[]=up",
            enc("requests_total")
        ),
    )
    .await;
    assert_eq!(
        r.body,
        r#"{"status":"success","data":["__name__","http.status","instance","job"]}"#
    );
    let r = get(&a.app, "/api/v1/labels?limit=2").await;
    assert_eq!(
        r.body,
        r#"{"status":"success","data":["__name__","http.status"],"warnings":["results truncated due to limit"]}"#
    );
    let r = get(&a.app, "/api/v1/labels?match[]=nothing").await;
    assert_eq!(r.body, r#"{"status":"success","data":[]}"#);
    // Window with no data.
    let r = get(&a.app, "/api/v1/labels?start=1&end=2").await;
    assert_eq!(r.body, r#"{"status":"success","data":[]}"#);
}

#[tokio::test]
async fn label_values_match_limit_escaped_names_get_only() {
    let a = fixture();
    let r = get(&a.app, "/api/v1/label/job/values").await;
    assert_eq!(r.body, r#"{"status":"success","data":["a","b"]}"#);
    let r = get(&a.app, "/api/v1/label/__name__/values").await;
    assert_eq!(
        r.body,
        r#"{"status":"success","data":["requests_total","up"]}"#
    );
    let r = get(
        &a.app,
        &format!(
            "/api/v1/label/job/values?match[]={}",
            enc(r#"up{instance="i2"}"#)
        ),
    )
    .await;
    assert_eq!(r.body, r#"{"status":"success","data":["b"]}"#);
    let r = get(&a.app, "/api/v1/label/job/values?limit=1").await;
    assert_eq!(
        r.body,
        r#"{"status":"success","data":["a"],"warnings":["results truncated due to limit"]}"#
    );
    // Grafana escapes UTF-8 names: http.status → U__http_2e_status.
    let r = get(&a.app, "/api/v1/label/U__http_2e_status/values").await;
    assert_eq!(r.body, r#"{"status":"success","data":["200"]}"#);
    let r = get(&a.app, "/api/v1/label/nope/values").await;
    assert_eq!(r.body, r#"{"status":"success","data":[]}"#);
    let r = get(
        &a.app,
        "/api/v1/label/job/values?start=2023-11-14T22:13:20Z&end=2023-11-14T22:23:20Z",
    )
    .await;
    assert_eq!(r.body, r#"{"status":"success","data":["a","b"]}"#);
    // GET only, as Prometheus: Grafana never POSTs here.
    let r = post(&a.app, "/api/v1/label/job/values", "").await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
}

fn label(n: &str, v: &str) -> v1::Label {
    v1::Label {
        name: Bytes::copy_from_slice(n.as_bytes()),
        value: Bytes::copy_from_slice(v.as_bytes()),
    }
}

async fn remote_write(app: &axum::Router, req: &v1::WriteRequest) {
    let raw = snap::raw::Encoder::new()
        .compress_vec(&req.encode_to_vec())
        .unwrap();
    let r = send(
        app,
        Request::post("/api/v1/write")
            .header(
                "content-type",
                "application/x-protobuf;proto=prometheus.WriteRequest",
            )
            .header("content-encoding", "snappy")
            .body(Body::from(raw))
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

#[tokio::test]
async fn metadata_from_remote_write() {
    let a = api();
    let r = get(&a.app, "/api/v1/metadata").await;
    assert_eq!(r.body, r#"{"status":"success","data":{}}"#);
    let md = |name: &str, ty: i32, help: &str, unit: &str| v1::MetricMetadata {
        r#type: ty,
        metric_family_name: name.into(),
        help: help.into(),
        unit: unit.into(),
    };
    let req = v1::WriteRequest {
        metadata: vec![
            md("req_total", 1, "Requests \"served\".", ""),
            md("temp", 2, "Temperature.", "celsius"),
        ],
        ..Default::default()
    };
    remote_write(&a.app, &req).await;
    let r = get(&a.app, "/api/v1/metadata").await;
    assert_eq!(
        r.json()["data"],
        json!({
            "req_total": [{"type": "counter", "help": "Requests \"served\".", "unit": ""}],
            "temp": [{"type": "gauge", "help": "Temperature.", "unit": "celsius"}],
        })
    );
    let r = get(&a.app, "/api/v1/metadata?metric=temp").await;
    assert_eq!(
        r.body,
        r#"{"status":"success","data":{"temp":[{"type":"gauge","help":"Temperature.","unit":"celsius"}]}}"#
    );
    let r = get(&a.app, "/api/v1/metadata?limit=1&limit_per_metric=1").await;
    assert_eq!(r.json()["data"].as_object().unwrap().len(), 1);
    let r = get(&a.app, "/api/v1/metadata?limit=0").await;
    assert_eq!(r.json()["data"], json!({}));
    let r = get(&a.app, "/api/v1/metadata?metric=unknown").await;
    assert_eq!(r.json()["data"], json!({}));
    let r = get(&a.app, "/api/v1/metadata?limit=x").await;
    assert_eq!(
        r.body,
        r#"{"status":"error","errorType":"bad_data","error":"limit must be a number"}"#
    );
    let r = get(&a.app, "/api/v1/metadata?limit_per_metric=x").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn exemplars_by_query_selectors() {
    let a = api();
    // Grafana's probe: `query=test`, start/end in ms (sic). Empty → [].
    let r = post(
        &a.app,
        "/api/v1/query_exemplars",
        "query=test&start=1600000000000&end=1600000600000",
    )
    .await;
    assert_eq!(r.body, r#"{"status":"success","data":[]}"#);
    let t = (now_ms() / 1000) * 1000 + 479;
    let series = |job: &str, trace: &str, v: f64| v1::TimeSeries {
        labels: vec![label("__name__", "req_total"), label("job", job)],
        samples: vec![v1::Sample {
            value: v,
            timestamp: t,
        }],
        exemplars: vec![v1::Exemplar {
            labels: vec![label("trace_id", trace)],
            value: v,
            timestamp: t,
        }],
        ..Default::default()
    };
    let req = v1::WriteRequest {
        timeseries: vec![series("a", "abc", 6.0), series("b", "def", 0.5)],
        ..Default::default()
    };
    remote_write(&a.app, &req).await;
    let secs = t / 1000;
    let q = enc(r#"sum(rate(req_total{job="a"}[5m]))"#);
    let r = get(
        &a.app,
        &format!(
            "/api/v1/query_exemplars?query={q}&start={}&end={}",
            secs - 60,
            secs + 60
        ),
    )
    .await;
    assert_eq!(
        r.body,
        format!(
            r#"{{"status":"success","data":[{{"seriesLabels":{{"__name__":"req_total","job":"a"}},"exemplars":[{{"labels":{{"trace_id":"abc"}},"value":"6","timestamp":{secs}.479}}]}}]}}"#
        )
    );
    // Two selectors, default window (all time).
    let q = enc(r#"req_total{job="a"} + req_total{job="b"}"#);
    let r = get(&a.app, &format!("/api/v1/query_exemplars?query={q}")).await;
    let v = r.json();
    assert_eq!(v["data"].as_array().unwrap().len(), 2, "{}", r.body);
    assert_eq!(v["data"][1]["exemplars"][0]["value"], "0.5");
    // Outside the window: [].
    let r = get(
        &a.app,
        "/api/v1/query_exemplars?query=req_total&start=1&end=2",
    )
    .await;
    assert_eq!(r.body, r#"{"status":"success","data":[]}"#);
    let r = get(&a.app, "/api/v1/query_exemplars?query=req_total%7B").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = get(&a.app, "/api/v1/query_exemplars?query=up&start=10&end=5").await;
    assert_eq!(
        r.json()["error"],
        "end timestamp must not be before start time"
    );
}

#[tokio::test]
async fn buildinfo_is_a_grafana_friendly_prometheus_2() {
    let a = api();
    let v = get(&a.app, "/api/v1/status/buildinfo").await.json();
    assert_eq!(v["status"], "success");
    assert_eq!(v["data"]["version"], "2.53.0");
    for k in ["revision", "branch", "buildUser", "buildDate", "goVersion"] {
        assert!(v["data"][k].is_string(), "{k}");
    }
    // A `features` map would make Grafana treat us as Mimir.
    assert!(v["data"].get("features").is_none());
    assert!(v["data"].get("application").is_none());
}

#[tokio::test]
async fn flags_config_runtimeinfo() {
    let a = api_with(ApiOptions {
        flags: vec![
            ("listen".into(), "127.0.0.1:9201".into()),
            ("query.timeout".into(), "2m".into()),
        ],
        storage_retention: "head only".into(),
        ..ApiOptions::default()
    });
    let r = get(&a.app, "/api/v1/status/flags").await;
    assert_eq!(
        r.body,
        r#"{"status":"success","data":{"listen":"127.0.0.1:9201","query.timeout":"2m"}}"#
    );
    let v = get(&a.app, "/api/v1/status/config").await.json();
    let yaml = v["data"]["yaml"].as_str().unwrap();
    assert!(yaml.contains("listen: \"127.0.0.1:9201\"\n"), "{yaml}");
    assert!(yaml.contains("query.timeout: \"2m\"\n"), "{yaml}");
    let v = get(&a.app, "/api/v1/status/runtimeinfo").await.json();
    let d = &v["data"];
    for k in [
        "startTime",
        "CWD",
        "hostname",
        "serverTime",
        "lastConfigTime",
        "GOGC",
        "GODEBUG",
    ] {
        assert!(d[k].is_string(), "{k}: {d}");
    }
    for k in [
        "corruptionCount",
        "goroutineCount",
        "GOMAXPROCS",
        "GOMEMLIMIT",
    ] {
        assert!(d[k].is_number(), "{k}: {d}");
    }
    assert_eq!(d["reloadConfigSuccess"], true);
    assert_eq!(d["storageRetention"], "head only");
    assert!(d["startTime"].as_str().unwrap().ends_with('Z'));
    assert_eq!(
        d["CWD"],
        std::env::current_dir().unwrap().display().to_string()
    );
}

#[tokio::test]
async fn tsdb_status_is_a_cardinality_explorer() {
    let a = api();
    let v = get(&a.app, "/api/v1/status/tsdb").await.json();
    assert_eq!(
        v["data"]["headStats"],
        json!({"numSeries": 0, "numLabelPairs": 0, "chunkCount": 0,
               "minTime": i64::MAX, "maxTime": i64::MIN})
    );
    assert_eq!(v["data"]["seriesCountByMetricName"], json!([]));

    let a = fixture();
    let v = get(&a.app, "/api/v1/status/tsdb").await.json();
    let d = &v["data"];
    assert_eq!(d["headStats"]["numSeries"], 3);
    // __name__=up, __name__=requests_total, instance=i1, instance=i2,
    // job=a, job=b, http.status=200.
    assert_eq!(d["headStats"]["numLabelPairs"], 7);
    assert!(d["headStats"]["chunkCount"].as_u64().unwrap() >= 3);
    assert_eq!(d["headStats"]["minTime"], 1_700_000_000_000i64);
    assert_eq!(d["headStats"]["maxTime"], 1_700_000_600_000i64);
    assert_eq!(
        d["seriesCountByMetricName"],
        json!([{"name": "up", "value": 2}, {"name": "requests_total", "value": 1}])
    );
    assert_eq!(
        d["labelValueCountByLabelName"],
        json!([
            {"name": "__name__", "value": 2},
            {"name": "instance", "value": 2},
            {"name": "job", "value": 2},
            {"name": "http.status", "value": 1},
        ])
    );
    // Bytes of distinct values: "up"+"requests_total" = 16, …
    assert_eq!(
        d["memoryInBytesByLabelName"][0],
        json!({"name": "__name__", "value": 16})
    );
    assert_eq!(
        d["seriesCountByLabelValuePair"][0],
        json!({"name": "__name__=up", "value": 2})
    );
    assert_eq!(
        d["seriesCountByLabelValuePair"][1],
        json!({"name": "job=a", "value": 2})
    );
    let v = get(&a.app, "/api/v1/status/tsdb?limit=1").await.json();
    assert_eq!(
        v["data"]["seriesCountByLabelValuePair"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    for (bad, msg) in [
        ("0", "limit must be a positive number"),
        ("x", "limit must be a positive number"),
        ("10001", "limit must not exceed 10000"),
    ] {
        let r = get(&a.app, &format!("/api/v1/status/tsdb?limit={bad}")).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(r.json()["error"], msg);
    }
}

#[tokio::test]
async fn rules_and_alerts_are_valid_and_empty() {
    let a = api();
    let r = get(&a.app, "/api/v1/rules").await;
    assert_eq!(r.body, r#"{"status":"success","data":{"groups":[]}}"#);
    let r = get(&a.app, "/api/v1/alerts").await;
    assert_eq!(r.body, r#"{"status":"success","data":{"alerts":[]}}"#);
}
