//! Query limits through the in-process router (issue 13): the nesting and
//! operator limits, panicking parser inputs, `--query.max-samples`
//! counting output points as Prometheus does, `--query.max-lookback-delta`,
//! and the query time-out on the metadata and status reads.

mod common;

use std::time::Duration;

use axum::http::StatusCode;
use tidemark::api::ApiOptions;
use tidemark::promql::EngineOptions;

use common::api::{enc, fixture, fixture_with, get, post, T0};

fn with_engine(engine: EngineOptions) -> common::api::Api {
    fixture_with(ApiOptions {
        engine,
        ..ApiOptions::default()
    })
}

#[tokio::test]
async fn deep_nesting_and_long_chains_are_400_naming_the_limit() {
    let a = fixture();
    let parens = format!("{}up{}", "(".repeat(50_000), ")".repeat(50_000));
    let r = post(&a.app, "/api/v1/query", &format!("query={}", enc(&parens))).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert!(
        r.body.contains("nested too deeply") && r.body.contains("256"),
        "{}",
        r.body
    );
    let chain = vec!["1"; 100_000].join("+");
    let r = post(&a.app, "/api/v1/query", &format!("query={}", enc(&chain))).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert!(r.body.contains("1000"), "{}", r.body);
    // A moderately deep query still works.
    let ok = format!("{}up{}", "(".repeat(200), ")".repeat(200));
    let r = post(
        &a.app,
        "/api/v1/query",
        &format!("query={}&time={}", enc(&ok), T0 / 1000 + 60),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let ok = vec!["up"; 500].join(" + ");
    let r = post(
        &a.app,
        "/api/v1/query",
        &format!("query={}&time={}", enc(&ok), T0 / 1000 + 60),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
}

#[tokio::test]
async fn inputs_that_panicked_the_parser_are_400() {
    let a = fixture();
    for q in [
        r#"up{a="\x41\é"}"#,
        "up offset Inf",
        "up offset NaN",
        "up offset -1e300",
        "rate(up[1e300])",
        "up @ 1e300",
        "up @ -1e300",
        "max_over_time(up[1e300:1s])",
        "max_over_time(up[5m:1e300])",
        "up offset 1e16",
    ] {
        let r = post(
            &a.app,
            "/api/v1/query",
            &format!("query={}&time={}", enc(q), T0 / 1000),
        )
        .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{q}: {}", r.body);
        assert!(
            r.body.contains("\"errorType\":\"bad_data\""),
            "{q}: {}",
            r.body
        );
    }
    // Times an i64 of ms holds but offsets would overflow.
    for (path, form) in [
        ("/api/v1/query", "query=up%20offset%20-5m&time=9e15"),
        ("/api/v1/query_range", "query=up&start=9e15&end=9e15&step=1"),
        (
            "/api/v1/query_range",
            "query=up&start=-9e15&end=-9e15&step=1",
        ),
    ] {
        let r = post(&a.app, path, form).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{form}: {}", r.body);
        assert!(r.body.contains("out of range"), "{form}: {}", r.body);
    }
}

#[tokio::test]
async fn max_samples_counts_output_points_of_range_queries() {
    // 2 series x 601 steps = 1202 output points, from only 82 loaded samples.
    let a = with_engine(EngineOptions {
        max_samples: 1_000,
        ..EngineOptions::default()
    });
    let form = |q: &str| {
        format!(
            "query={}&start={}&end={}&step=1",
            enc(q),
            T0 / 1000,
            T0 / 1000 + 600
        )
    };
    for q in ["up", "last_over_time(up[1m])", "max_over_time(up[5m:1s])"] {
        let r = post(&a.app, "/api/v1/query_range", &form(q)).await;
        assert_eq!(
            r.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{q}: {}",
            r.body
        );
        assert!(r.body.contains("too many samples"), "{}", r.body);
    }
    // The same query fits when the limit does.
    let a = with_engine(EngineOptions {
        max_samples: 10_000,
        ..EngineOptions::default()
    });
    let r = post(&a.app, "/api/v1/query_range", &form("up")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    // Samples are released as a node consumes its inputs: a chain of
    // operations over the same data does not add up.
    let a = with_engine(EngineOptions {
        max_samples: 3_000,
        ..EngineOptions::default()
    });
    let r = post(
        &a.app,
        "/api/v1/query_range",
        &form("abs(abs(abs(abs(up))))"),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
}

#[tokio::test]
async fn lookback_delta_has_a_ceiling() {
    let a = fixture();
    let r = post(
        &a.app,
        "/api/v1/query",
        &format!("query=up&time={}&lookback_delta=1y", T0 / 1000),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert!(r.body.contains("--query.max-lookback-delta"), "{}", r.body);
    assert!(r.body.contains("1d"), "{}", r.body);
    let r = post(
        &a.app,
        "/api/v1/query",
        &format!("query=up&time={}&lookback_delta=1h", T0 / 1000 + 4000),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(
        r.json()["data"]["result"].as_array().unwrap().len(),
        2,
        "{}",
        r.body
    );
}

#[tokio::test]
async fn metadata_and_status_reads_honour_the_query_timeout() {
    let a = with_engine(EngineOptions {
        timeout: Duration::ZERO,
        ..EngineOptions::default()
    });
    for uri in [
        "/api/v1/series?match[]=up".to_string(),
        "/api/v1/labels".to_string(),
        "/api/v1/labels?match[]=up".to_string(),
        "/api/v1/label/job/values".to_string(),
        "/api/v1/status/tsdb".to_string(),
        format!("/api/v1/query?query=up&time={}", T0 / 1000),
    ] {
        let r = get(&a.app, &uri).await;
        assert_eq!(
            r.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{uri}: {}",
            r.body
        );
        assert!(
            r.body.contains("\"errorType\":\"timeout\""),
            "{uri}: {}",
            r.body
        );
    }
    // With time to spare they answer.
    let a = fixture();
    for uri in [
        "/api/v1/series?match[]=up",
        "/api/v1/labels",
        "/api/v1/status/tsdb",
    ] {
        let r = get(&a.app, uri).await;
        assert_eq!(r.status, StatusCode::OK, "{uri}: {}", r.body);
    }
}
