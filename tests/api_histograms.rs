//! Native histograms through the query API in-process: instant vectors
//! carry `histogram`, matrices `histograms`, in exactly the JSON shape
//! Prometheus writes (Grafana's heatmap reads it), and the histogram
//! functions answer over HTTP.

mod common;

use axum::http::StatusCode;
use common::api::{api, enc, get, T0};
use tidemark::model::{FloatHistogram, HistogramSample, HistogramValue, Labels};
use tidemark::storage::SeriesSamples;

/// `latency{job="a"}`: schema 0, buckets (0.5,1], (1,2], (2,4] holding
/// 1, 2, 1 observations at T0 and twice that one minute later.
fn load(a: &common::api::Api) {
    let h = |k: f64| {
        let mut h = FloatHistogram {
            schema: 0,
            count: 4.0 * k,
            sum: 6.0 * k,
            ..Default::default()
        };
        h.set_positive(&[(0, k), (1, 2.0 * k), (2, k)]);
        h
    };
    let batch = vec![SeriesSamples {
        created: Vec::new(),
        labels: Labels::from_static(&[("__name__", "latency"), ("job", "a")]),
        samples: Vec::new(),
        histograms: vec![
            HistogramSample {
                t: T0,
                h: HistogramValue::Float(h(1.0)),
            },
            HistogramSample {
                t: T0 + 60_000,
                h: HistogramValue::Float(h(2.0)),
            },
        ],
    }];
    let out = a.db.append(&batch).unwrap();
    assert!(out.rejected.is_empty(), "{out:?}");
}

#[tokio::test]
async fn instant_histogram_sample_exact_body() {
    let a = api();
    load(&a);
    let r = get(
        &a.app,
        &format!("/api/v1/query?query=latency&time={}", (T0 + 60_000) / 1000),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.body,
        r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"__name__":"latency","job":"a"},"histogram":[1700000060,{"count":"8","sum":"12","buckets":[[0,"0.5","1","2"],[0,"1","2","4"],[0,"2","4","2"]]}]}]}}"#
    );
}

#[tokio::test]
async fn range_query_returns_histograms_not_values() {
    let a = api();
    load(&a);
    let r = get(
        &a.app,
        &format!(
            "/api/v1/query_range?query=latency&start={}&end={}&step=60",
            T0 / 1000,
            (T0 + 60_000) / 1000
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let v = r.json();
    let series = &v["data"]["result"][0];
    assert!(series.get("values").is_none(), "{}", r.body);
    let hs = series["histograms"].as_array().unwrap();
    assert_eq!(hs.len(), 2);
    assert_eq!(hs[0][0], 1_700_000_000);
    assert_eq!(hs[0][1]["count"], "4");
    assert_eq!(
        hs[1][1]["buckets"][1],
        serde_json::json!([0, "1", "2", "4"])
    );
}

#[tokio::test]
async fn histogram_functions_over_http() {
    let a = api();
    load(&a);
    let at = (T0 + 60_000) / 1000;
    let q = |e: &str| format!("/api/v1/query?query={}&time={at}", enc(e));
    let value = |body: serde_json::Value| body["data"]["result"][0]["value"][1].clone();
    let r = get(&a.app, &q("histogram_count(latency)")).await;
    assert_eq!(value(r.json()), "8");
    let r = get(&a.app, &q("histogram_sum(latency)")).await;
    assert_eq!(value(r.json()), "12");
    // Rank 4 of 8 is half way into (1,2]: exponential interpolation, √2.
    let r = get(&a.app, &q("histogram_quantile(0.5, latency)")).await;
    assert_eq!(value(r.json()), "1.4142135623730951");
    let r = get(&a.app, &q("histogram_fraction(0, 2, latency)")).await;
    assert_eq!(value(r.json()), "0.75");
    // increase over the minute: the second sample minus the first,
    // extrapolated like Prometheus, still a histogram.
    let r = get(&a.app, &q("sum(increase(latency[2m]))")).await;
    let v = r.json();
    assert!(
        v["data"]["result"][0]["histogram"][1]["count"].is_string(),
        "{}",
        r.body
    );
    // Histogram times scalar scales every bucket; histogram plus scalar
    // is not defined: no result, and the info annotation says why.
    let r = get(&a.app, &q("latency * 2")).await;
    let v = r.json();
    assert_eq!(v["data"]["result"][0]["histogram"][1]["count"], "16");
    let r = get(&a.app, &q("latency + 2")).await;
    let v = r.json();
    assert_eq!(v["data"]["result"], serde_json::json!([]));
    assert_eq!(
        v["infos"][0],
        "PromQL info: incompatible sample types encountered for binary operator \"+\": histogram + float"
    );
}

#[tokio::test]
async fn status_tsdb_counts_histogram_series() {
    let a = api();
    load(&a);
    let r = get(&a.app, "/api/v1/status/tsdb").await;
    assert_eq!(r.status, StatusCode::OK);
    let v = r.json();
    let head = &v["data"]["headStats"];
    assert_eq!(head["numSeries"], 1, "{}", r.body);
    assert!(head["chunkCount"].as_u64().unwrap() >= 1, "{}", r.body);
    assert_eq!(head["minTime"], T0);
    assert_eq!(head["maxTime"], T0 + 60_000);
    assert_eq!(
        v["data"]["seriesCountByMetricName"],
        serde_json::json!([{"name": "latency", "value": 1}])
    );
}

#[tokio::test]
async fn instant_range_vector_of_histograms() {
    let a = api();
    load(&a);
    let r = get(
        &a.app,
        &format!(
            "/api/v1/query?query={}&time={}",
            enc("latency[2m]"),
            (T0 + 60_000) / 1000
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let v = r.json();
    assert_eq!(v["data"]["resultType"], "matrix");
    let s = &v["data"]["result"][0];
    assert!(s.get("values").is_none(), "{}", r.body);
    assert_eq!(
        s["histograms"],
        serde_json::json!([
            [1_700_000_000, {"count": "4", "sum": "6", "buckets": [[0, "0.5", "1", "1"], [0, "1", "2", "2"], [0, "2", "4", "1"]]}],
            [1_700_000_060, {"count": "8", "sum": "12", "buckets": [[0, "0.5", "1", "2"], [0, "1", "2", "4"], [0, "2", "4", "2"]]}]
        ])
    );
}
