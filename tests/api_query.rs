//! The query API in-process: `/api/v1/query` and `/api/v1/query_range` in
//! GET and POST form, every time/step/duration spelling, limits, every
//! parameter error with Prometheus's message and status, Grafana's health
//! check, the readiness gate, unknown paths and gzip.

mod common;

use std::io::Read;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::api::{api, enc, fixture, fixture_with, get, post, send, T0};
use serde_json::json;
use tidemark::api::{router, ApiOptions, AppState};
use tidemark::promql::EngineOptions;

/// Sorts a vector/matrix result by its `metric` for order-free comparison.
fn sorted_result(v: &serde_json::Value) -> Vec<serde_json::Value> {
    let mut r = v["data"]["result"].as_array().unwrap().clone();
    r.sort_by_key(|x| x["metric"].to_string());
    r
}

#[tokio::test]
async fn grafana_health_check_one_plus_one_at_time_4() {
    let a = api();
    // Grafana posts `query=1+1&time=4`; the form encodes `+` as %2B.
    let r = post(&a.app, "/api/v1/query", "query=1%2B1&time=4").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.headers["content-type"], "application/json");
    assert_eq!(
        r.body,
        r#"{"status":"success","data":{"resultType":"scalar","result":[4,"2"]}}"#
    );
    let r = get(&a.app, "/api/v1/query?query=1%2B1&time=4").await;
    assert_eq!(
        r.body,
        r#"{"status":"success","data":{"resultType":"scalar","result":[4,"2"]}}"#
    );
}

#[tokio::test]
async fn instant_vector_exact_body_get_and_post() {
    let a = fixture();
    let want = r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"__name__":"up","instance":"i1","job":"a"},"value":[1700000600,"1"]}]}}"#;
    let q = enc(r#"up{job="a"}"#);
    let r = get(&a.app, &format!("/api/v1/query?query={q}&time=1700000600")).await;
    assert_eq!((r.status, r.body.as_str()), (StatusCode::OK, want));
    let r = post(
        &a.app,
        "/api/v1/query",
        &format!("query={q}&time=1700000600"),
    )
    .await;
    assert_eq!(r.body, want);
    // Body values win over URL values, as Go's r.FormValue.
    let r = send(
        &a.app,
        Request::post("/api/v1/query?query=nothing&time=1")
            .header(
                "content-type",
                "application/x-www-form-urlencoded; charset=UTF-8",
            )
            .body(Body::from(format!("query={q}&time=1700000600")))
            .unwrap(),
    )
    .await;
    assert_eq!(r.body, want);
}

#[tokio::test]
async fn time_parameter_forms_agree() {
    let a = fixture();
    let base = "/api/v1/query?query=up";
    let want = get(&a.app, &format!("{base}&time=1700000000")).await.json();
    assert_eq!(sorted_result(&want).len(), 2);
    for t in [
        "2023-11-14T22:13:20Z",
        "2023-11-14T22:13:20.000Z",
        "2023-11-15T00:13:20%2B02:00",
        "2023-11-14T20:13:20-02:00",
        "1700000000.000",
        "1.7e9",
    ] {
        let got = get(&a.app, &format!("{base}&time={t}")).await.json();
        assert_eq!(sorted_result(&got), sorted_result(&want), "time={t}");
    }
    // Fractional seconds are kept to the millisecond, written with three digits.
    let r = get(&a.app, &format!("{base}&time=1700000000.5")).await;
    assert!(
        r.body.contains(r#""value":[1700000000.500,"1"]"#),
        "{}",
        r.body
    );
    let r = get(&a.app, &format!("{base}&time=1700000000.0504")).await;
    assert!(r.body.contains(r#""value":[1700000000.050,"#), "{}", r.body);
}

#[tokio::test]
async fn time_defaults_to_now() {
    let a = fixture();
    let r = get(&a.app, "/api/v1/query?query=time()").await.json();
    let t = r["data"]["result"][0].as_f64().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!((now - t).abs() < 60.0, "time() = {t}, now = {now}");
    // Old data is out of the lookback window at "now".
    let r = get(&a.app, "/api/v1/query?query=up").await;
    assert_eq!(
        r.body,
        r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#
    );
}

#[tokio::test]
async fn range_query_step_forms_and_shape() {
    let a = fixture();
    let q = enc(r#"up{job="a"}"#);
    let want = r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"__name__":"up","instance":"i1","job":"a"},"values":[[1700000000,"1"],[1700000015,"1"],[1700000030,"1"],[1700000045,"1"],[1700000060,"1"]]}]}}"#;
    for step in ["15", "15s", "15.0", "15000ms", "0.25m"] {
        let (start, end) = ("1700000000", "1700000060");
        let path = format!("/api/v1/query_range?query={q}&start={start}&end={end}&step={step}");
        let r = get(&a.app, &path).await;
        if step == "0.25m" {
            assert_eq!(r.status, StatusCode::BAD_REQUEST, "{step}: {}", r.body);
            continue;
        }
        assert_eq!(r.body, want, "step={step}");
    }
    let form = format!("query={q}&start=2023-11-14T22:13:20Z&end=2023-11-14T22:14:20Z&step=15s");
    let r = post(&a.app, "/api/v1/query_range", &form).await;
    assert_eq!(r.body, want);
    // Scalars become a matrix with an empty metric.
    let r = get(
        &a.app,
        "/api/v1/query_range?query=1%2B1&start=4&end=5&step=1",
    )
    .await;
    assert_eq!(
        r.body,
        r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":[[4,"2"],[5,"2"]]}]}}"#
    );
}

#[tokio::test]
async fn queries_that_do_not_need_function_kernels() {
    let a = fixture();
    let at = "time=1700000600";
    let cases: &[(&str, serde_json::Value)] = &[
        ("sum(up)", json!([{"metric":{},"value":[1700000600,"1"]}])),
        ("count(up)", json!([{"metric":{},"value":[1700000600,"2"]}])),
        (
            "topk(1, up)",
            json!([{"metric":{"__name__":"up","instance":"i1","job":"a"},"value":[1700000600,"1"]}]),
        ),
        (
            "up{job=\"a\"} * 3 + 0.5",
            json!([{"metric":{"instance":"i1","job":"a"},"value":[1700000600,"3.5"]}]),
        ),
        (
            "up{job=\"b\"} / 0",
            json!([{"metric":{"instance":"i2","job":"b"},"value":[1700000600,"NaN"]}]),
        ),
        (
            "up{job=\"a\"} / 0",
            json!([{"metric":{"instance":"i1","job":"a"},"value":[1700000600,"+Inf"]}]),
        ),
        (
            "requests_total offset 5m",
            json!([{"metric":{"__name__":"requests_total","http.status":"200","job":"a"},"value":[1700000600,"200"]}]),
        ),
        (
            "requests_total @ 1700000150",
            json!([{"metric":{"__name__":"requests_total","http.status":"200","job":"a"},"value":[1700000600,"100"]}]),
        ),
        (
            "label_replace(up{job=\"a\"}, \"team\", \"x-$1\", \"job\", \"(.*)\")",
            json!([{"metric":{"__name__":"up","instance":"i1","job":"a","team":"x-a"},"value":[1700000600,"1"]}]),
        ),
        (
            "requests_total / 1e9",
            json!([{"metric":{"http.status":"200","job":"a"},"value":[1700000600,"4e-07"]}]),
        ),
        (
            "requests_total * 1e19",
            json!([{"metric":{"http.status":"200","job":"a"},"value":[1700000600,"4e+21"]}]),
        ),
    ];
    for (q, want) in cases {
        let r = get(&a.app, &format!("/api/v1/query?query={}&{at}", enc(q))).await;
        assert_eq!(r.status, StatusCode::OK, "{q}: {}", r.body);
        let got = r.json();
        assert_eq!(got["data"]["resultType"], "vector", "{q}");
        assert_eq!(&got["data"]["result"], want, "{q}");
    }
    // A string result.
    let r = get(
        &a.app,
        &format!("/api/v1/query?query={}&{at}", enc("\"hi\"")),
    )
    .await;
    assert_eq!(
        r.body,
        r#"{"status":"success","data":{"resultType":"string","result":[1700000600,"hi"]}}"#
    );
    // A range selector at the top of an instant query is a matrix.
    let r = get(
        &a.app,
        &format!("/api/v1/query?query={}&{at}", enc("up{job=\"a\"}[30s]")),
    )
    .await;
    assert_eq!(
        r.body,
        r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"__name__":"up","instance":"i1","job":"a"},"values":[[1700000585,"1"],[1700000600,"1"]]}]}}"#
    );
}

#[tokio::test]
async fn limit_truncates_with_warning() {
    let a = fixture();
    let r = get(&a.app, "/api/v1/query?query=up&time=1700000600&limit=1").await;
    let v = r.json();
    assert_eq!(v["data"]["result"].as_array().unwrap().len(), 1);
    assert_eq!(v["warnings"], json!(["results truncated due to limit"]));
    let r = get(
        &a.app,
        "/api/v1/query_range?query=up&start=1700000000&end=1700000060&step=15&limit=1",
    )
    .await;
    let v = r.json();
    assert_eq!(v["data"]["result"].as_array().unwrap().len(), 1);
    assert_eq!(v["warnings"], json!(["results truncated due to limit"]));
    // Not truncated: no warnings key at all.
    for limit in ["2", "0", "10"] {
        let r = get(
            &a.app,
            &format!("/api/v1/query?query=up&time=1700000600&limit={limit}"),
        )
        .await;
        assert!(!r.body.contains("warnings"), "limit={limit}: {}", r.body);
        assert_eq!(r.json()["data"]["result"].as_array().unwrap().len(), 2);
    }
}

/// Every parameter error: status, errorType and Prometheus's message.
#[tokio::test]
async fn parameter_errors_are_bad_data_with_prometheus_messages() {
    let a = fixture();
    let q = "/api/v1/query?query=up";
    let qr = "/api/v1/query_range?query=up";
    let cases: Vec<(String, &str)> = vec![
        (
            format!("{q}&time=abc"),
            r#"invalid parameter "time": cannot parse "abc" to a valid timestamp"#,
        ),
        (
            format!("{q}&time=2015-07-01T20:10:51"),
            r#"invalid parameter "time": cannot parse "2015-07-01T20:10:51" to a valid timestamp"#,
        ),
        (
            format!("{q}&timeout=soon"),
            r#"invalid parameter "timeout": cannot parse "soon" to a valid duration"#,
        ),
        (
            format!("{q}&limit=-1"),
            r#"invalid parameter "limit": limit must be non-negative"#,
        ),
        (
            format!("{q}&limit=x"),
            r#"invalid parameter "limit": cannot parse "x" to a valid limit"#,
        ),
        (
            "/api/v1/query?query=up%7B&time=1".to_string(),
            r#"invalid parameter "query": "#,
        ),
        (
            "/api/v1/query?time=1".to_string(),
            r#"invalid parameter "query": "#,
        ),
        (
            format!("{qr}&end=10&step=1"),
            r#"invalid parameter "start": cannot parse "" to a valid timestamp"#,
        ),
        (
            format!("{qr}&start=0&end=x&step=1"),
            r#"invalid parameter "end": cannot parse "x" to a valid timestamp"#,
        ),
        (
            format!("{qr}&start=10&end=5&step=1"),
            "end timestamp must not be before start time",
        ),
        (
            format!("{qr}&start=0&end=10&step=abc"),
            r#"invalid parameter "step": cannot parse "abc" to a valid duration"#,
        ),
        (
            format!("{qr}&start=0&end=10"),
            r#"invalid parameter "step": cannot parse "" to a valid duration"#,
        ),
        (
            format!("{qr}&start=0&end=10&step=0"),
            "zero or negative query resolution step widths are not accepted. Try a positive integer",
        ),
        (
            format!("{qr}&start=0&end=10&step=-5s"),
            r#"invalid parameter "step": cannot parse "-5s" to a valid duration"#,
        ),
        (
            format!("{qr}&start=0&end=10&step=-5"),
            "zero or negative query resolution step widths are not accepted. Try a positive integer",
        ),
        (
            format!("{qr}&start=0&end=11001&step=1"),
            "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)",
        ),
    ];
    for (path, msg) in cases {
        let r = get(&a.app, &path).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{path}: {}", r.body);
        let v = r.json();
        assert_eq!(v["status"], "error", "{path}");
        assert_eq!(v["errorType"], "bad_data", "{path}");
        let err = v["error"].as_str().unwrap();
        assert!(
            err.starts_with(msg),
            "{path}: {err:?} does not start with {msg:?}"
        );
        assert!(v.get("data").is_none(), "{path}");
    }
    // Exactly 11,000 steps (11,001 points) is allowed, as in Prometheus.
    let r = get(&a.app, &format!("{qr}&start=0&end=11000&step=1")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    // The same errors in POST form.
    let r = post(&a.app, "/api/v1/query", "query=up&time=abc").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn execution_errors_are_422() {
    let a = fixture_with(ApiOptions {
        engine: EngineOptions {
            max_samples: 5,
            ..EngineOptions::default()
        },
        ..ApiOptions::default()
    });
    let r = get(
        &a.app,
        &format!("/api/v1/query?query={}&time=1700000600", enc("up[10m]")),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    assert_eq!(
        r.body,
        r#"{"status":"error","errorType":"execution","error":"query processing would load too many samples into memory in query execution"}"#
    );
    let a = fixture();
    let dup = r#"label_replace(label_replace(up, "job", "x", "", ""), "instance", "x", "", "")"#;
    let r = get(
        &a.app,
        &format!("/api/v1/query?query={}&time=1700000600", enc(dup)),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    assert_eq!(r.json()["errorType"], "execution");
}

#[tokio::test]
async fn per_query_timeout_is_accepted_in_both_forms() {
    let a = fixture();
    for t in ["30s", "30", "0.5"] {
        let r = get(
            &a.app,
            &format!("/api/v1/query?query=up&time=1700000600&timeout={t}"),
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "timeout={t}: {}", r.body);
    }
    let r = get(
        &a.app,
        "/api/v1/query?query=up&time=1700000600&lookback_delta=1s",
    )
    .await;
    // Samples are 15 s apart and the last is at 1700000600: still found.
    assert_eq!(r.json()["data"]["result"].as_array().unwrap().len(), 2);
    let r = get(
        &a.app,
        "/api/v1/query?query=up&time=1700000605&lookback_delta=1s",
    )
    .await;
    assert_eq!(r.json()["data"]["result"], json!([]));
}

#[tokio::test]
async fn not_ready_is_plain_text_503() {
    let state = AppState::new();
    let app = router(state);
    for path in [
        "/api/v1/query?query=1",
        "/api/v1/series?match[]=up",
        "/api/v1/labels",
        "/api/v1/status/buildinfo",
    ] {
        let r = get(&app, path).await;
        assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{path}");
        assert_eq!(r.body, "Service Unavailable", "{path}");
    }
}

#[tokio::test]
async fn unknown_api_path_is_json_404() {
    let a = api();
    let r = get(&a.app, "/api/v1/nope").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(
        r.body,
        r#"{"status":"error","errorType":"not_found","error":"unknown API endpoint \"/api/v1/nope\""}"#
    );
    let r = get(&a.app, "/elsewhere").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(!r.body.starts_with('{'));
}

#[tokio::test]
async fn gzip_and_deflate_when_asked() {
    let a = fixture();
    let path = "/api/v1/query_range?query=up&start=1700000000&end=1700000600&step=15";
    let plain = get(&a.app, path).await;
    assert!(plain.headers.get("content-encoding").is_none());
    for (enc_name, decode) in [
        (
            "gzip",
            (|b: &[u8]| {
                let mut s = String::new();
                flate2::read::GzDecoder::new(b)
                    .read_to_string(&mut s)
                    .unwrap();
                s
            }) as fn(&[u8]) -> String,
        ),
        ("deflate", |b: &[u8]| {
            let mut s = String::new();
            flate2::read::ZlibDecoder::new(b)
                .read_to_string(&mut s)
                .unwrap();
            s
        }),
    ] {
        let resp = tower::ServiceExt::oneshot(
            a.app.clone(),
            Request::get(path)
                .header("accept-encoding", enc_name)
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
        assert_eq!(resp.headers()["content-encoding"], enc_name);
        let bytes = http_body_util::BodyExt::collect(resp.into_body())
            .await
            .unwrap()
            .to_bytes();
        assert!(bytes.len() < plain.body.len());
        assert_eq!(decode(&bytes), plain.body, "{enc_name}");
    }
}

#[tokio::test]
async fn format_and_parse_query() {
    let a = api();
    let r = get(
        &a.app,
        &format!(
            "/api/v1/format_query?query={}",
            enc("sum(up{job=\"a\"})by(job)")
        ),
    )
    .await;
    assert_eq!(
        r.body,
        r#"{"status":"success","data":"sum by (job) (up{job=\"a\"})"}"#
    );
    let r = post(&a.app, "/api/v1/format_query", "query=up%7B").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.json()["errorType"], "bad_data");
    let r = get(
        &a.app,
        &format!("/api/v1/parse_query?query={}", enc("up{job=\"a\"}")),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let v = r.json();
    assert_eq!(v["data"]["type"], "vectorSelector", "{}", r.body);
    assert_eq!(v["data"]["name"], "up", "{}", r.body);
}

#[tokio::test]
async fn admin_api_disabled_and_enabled() {
    let a = api();
    for action in ["delete_series", "clean_tombstones", "snapshot"] {
        let r = post(&a.app, &format!("/api/v1/admin/tsdb/{action}"), "").await;
        assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{action}");
        assert_eq!(
            r.body,
            r#"{"status":"error","errorType":"unavailable","error":"admin APIs disabled"}"#
        );
    }
    let a = fixture_with(ApiOptions {
        enable_admin_api: true,
        ..ApiOptions::default()
    });
    // snapshot: Prometheus's answer shape, the head written as a block.
    let r = post(&a.app, "/api/v1/admin/tsdb/snapshot", "").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let name = r.json()["data"]["name"].as_str().unwrap().to_string();
    let snap = a.db.dir().join("snapshots").join(&name);
    let blocks: Vec<_> = std::fs::read_dir(&snap).unwrap().flatten().collect();
    assert_eq!(blocks.len(), 1, "{name}");
    assert!(blocks[0].path().join("meta.json").is_file());
    let r = post(&a.app, "/api/v1/admin/tsdb/snapshot", "skip_head=maybe").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert!(r.body.contains("skip_head"), "{}", r.body);
    let r = post(&a.app, "/api/v1/admin/tsdb/snapshot", "skip_head=true").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    // delete_series: match[] required; deletes in [start, end] only.
    let r = post(&a.app, "/api/v1/admin/tsdb/delete_series", "").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(
        r.body.contains("no match[] parameter provided"),
        "{}",
        r.body
    );
    let form = format!(
        "match[]={}&start={}&end={}",
        enc("up{job=\"a\"}"),
        T0 / 1000,
        T0 / 1000 + 300
    );
    let r = post(&a.app, "/api/v1/admin/tsdb/delete_series", &form).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    assert_eq!(r.body, "");
    let r = get(
        &a.app,
        &format!(
            "/api/v1/query_range?query={}&start={}&end={}&step=15",
            enc("count_over_time(up[14s])"),
            T0 / 1000,
            T0 / 1000 + 600
        ),
    )
    .await;
    let v = r.json();
    let res = v["data"]["result"].as_array().unwrap();
    let i1 = res
        .iter()
        .find(|s| s["metric"]["instance"] == "i1")
        .unwrap();
    let i2 = res
        .iter()
        .find(|s| s["metric"]["instance"] == "i2")
        .unwrap();
    // i1 lost the samples at T0..=T0+300s (21 of 41); i2 kept all 41.
    assert_eq!(i1["values"].as_array().unwrap().len(), 20, "{}", r.body);
    assert_eq!(i2["values"].as_array().unwrap().len(), 41, "{}", r.body);
    let r = post(&a.app, "/api/v1/admin/tsdb/clean_tombstones", "").await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    let r = post(&a.app, "/api/v1/admin/tsdb/compact", "").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}
