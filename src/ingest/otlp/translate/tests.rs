//! Golden translations of Prometheus 3's `otlp` settings, written from
//! its translator's rules (prometheus/prometheus
//! d15adb9ad7e5d9fbde3a9a8f30200593a5a14d86,
//! `storage/remote/otlptranslator/prometheusremotewrite/helper.go`
//! `createAttributes` and `addResourceTargetInfo`, `metrics_to_prw.go`
//! `setResourceContext`, `setScopeContext`, `addPromotedAttributes`,
//! `otlp_to_openmetrics_metadata.go`, `histograms.go`).

use std::collections::BTreeMap;

use tidemark_proto::opentelemetry::proto::common::v1::InstrumentationScope;
use tidemark_proto::opentelemetry::proto::metrics::v1 as m;
use tidemark_proto::opentelemetry::proto::resource::v1::Resource;

use super::*;

fn kv(k: &str, v: &str) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(v.into())),
        }),
        ..Default::default()
    }
}

const T: u64 = 1_700_000_000_000_000_000;

fn number(attrs: &[(&str, &str)], v: f64) -> m::NumberDataPoint {
    m::NumberDataPoint {
        attributes: attrs.iter().map(|(k, v)| kv(k, v)).collect(),
        start_time_unix_nano: T - 60_000_000_000,
        time_unix_nano: T,
        value: Some(m::number_data_point::Value::AsDouble(v)),
        ..Default::default()
    }
}

fn metric(name: &str, data: m::metric::Data) -> m::Metric {
    m::Metric {
        name: name.into(),
        data: Some(data),
        ..Default::default()
    }
}

fn gauge(name: &str, points: Vec<m::NumberDataPoint>) -> m::Metric {
    metric(
        name,
        m::metric::Data::Gauge(m::Gauge {
            data_points: points,
        }),
    )
}

fn request(
    resource: &[(&str, &str)],
    scope: Option<InstrumentationScope>,
    schema_url: &str,
    metrics: Vec<m::Metric>,
) -> ExportMetricsServiceRequest {
    ExportMetricsServiceRequest {
        resource_metrics: vec![m::ResourceMetrics {
            resource: Some(Resource {
                attributes: resource.iter().map(|(k, v)| kv(k, v)).collect(),
                ..Default::default()
            }),
            scope_metrics: vec![m::ScopeMetrics {
                scope,
                metrics,
                schema_url: schema_url.into(),
            }],
            ..Default::default()
        }],
    }
}

/// Every series as `name -> [label set without __name__]`.
fn series(t: &Translated) -> BTreeMap<String, Vec<BTreeMap<String, String>>> {
    let mut out: BTreeMap<String, Vec<BTreeMap<String, String>>> = BTreeMap::new();
    for s in &t.series {
        let name = s.labels.metric_name().unwrap_or("").to_string();
        let labels = s
            .labels
            .iter()
            .filter(|l| &*l.name != METRIC_NAME)
            .map(|l| (l.name.to_string(), l.value.to_string()))
            .collect();
        out.entry(name).or_default().push(labels);
    }
    out
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

const RESOURCE: [(&str, &str); 5] = [
    ("service.name", "api"),
    ("service.namespace", "shop"),
    ("service.instance.id", "pod-1"),
    ("k8s.pod.name", "p1"),
    ("cloud.region", "eu"),
];

#[test]
fn promoted_resource_attributes_fill_labels_points_lack() {
    let req = request(
        &RESOURCE,
        None,
        "",
        vec![gauge(
            "g",
            vec![number(&[], 1.0), number(&[("k8s.pod.name", "own")], 2.0)],
        )],
    );
    let opts = TranslateOptions {
        promote: Promote::Only(vec!["k8s.pod.name".into(), "absent".into()]),
        ..Default::default()
    };
    let got = series(&translate_with(&req, &opts));
    let base = [("job", "shop/api"), ("instance", "pod-1")];
    assert_eq!(
        got["g"],
        vec![
            labels(&[base[0], base[1], ("k8s_pod_name", "own")]),
            labels(&[base[0], base[1], ("k8s_pod_name", "p1")]),
        ]
    );
    // target_info: every non-identifying attribute, nothing promoted twice.
    assert_eq!(
        got["target_info"],
        vec![labels(&[
            base[0],
            base[1],
            ("k8s_pod_name", "p1"),
            ("cloud_region", "eu")
        ])]
    );
}

#[test]
fn promote_all_promotes_every_attribute_but_the_ignored() {
    let req = request(
        &RESOURCE,
        None,
        "",
        vec![gauge("g", vec![number(&[], 1.0)])],
    );
    let opts = TranslateOptions {
        promote: Promote::AllExcept(vec!["cloud.region".into()]),
        ..Default::default()
    };
    // `addPromotedAttributes` with promoteAll ranges over every attribute,
    // the service.* ones included.
    assert_eq!(
        series(&translate_with(&req, &opts))["g"],
        vec![labels(&[
            ("job", "shop/api"),
            ("instance", "pod-1"),
            ("service_name", "api"),
            ("service_namespace", "shop"),
            ("service_instance_id", "pod-1"),
            ("k8s_pod_name", "p1"),
        ])]
    );
}

#[test]
fn identifying_attributes_kept_on_target_info_when_asked() {
    let req = request(
        &RESOURCE,
        None,
        "",
        vec![gauge("g", vec![number(&[], 1.0)])],
    );
    let opts = TranslateOptions {
        keep_identifying_resource_attributes: true,
        ..Default::default()
    };
    assert_eq!(
        series(&translate_with(&req, &opts))["target_info"],
        vec![labels(&[
            ("job", "shop/api"),
            ("instance", "pod-1"),
            ("service_name", "api"),
            ("service_namespace", "shop"),
            ("service_instance_id", "pod-1"),
            ("k8s_pod_name", "p1"),
            ("cloud_region", "eu"),
        ])]
    );
}

#[test]
fn no_target_info_without_job_or_instance_or_other_attributes() {
    let only_other = request(
        &[("host.name", "h")],
        None,
        "",
        vec![gauge("g", vec![number(&[], 1.0)])],
    );
    let got = series(&translate(&only_other));
    assert!(!got.contains_key("target_info"), "{got:?}");
    let only_identifying = request(
        &RESOURCE[..3],
        None,
        "",
        vec![gauge("g", vec![number(&[], 1.0)])],
    );
    assert!(!series(&translate(&only_identifying)).contains_key("target_info"));
}

#[test]
fn scope_metadata_becomes_labels_when_promoted() {
    let scope = InstrumentationScope {
        name: "io.lib".into(),
        version: "1.2.3".into(),
        attributes: vec![kv("lib.tier", "core")],
        ..Default::default()
    };
    let req = request(
        &RESOURCE[..4],
        Some(scope.clone()),
        "https://opentelemetry.io/schemas/1.24.0",
        vec![gauge("g", vec![number(&[], 1.0)])],
    );
    // Off by default (Prometheus's default).
    let got = series(&translate(&req));
    assert_eq!(
        got["g"],
        vec![labels(&[("job", "shop/api"), ("instance", "pod-1")])]
    );
    let opts = TranslateOptions {
        promote_scope_metadata: true,
        ..Default::default()
    };
    let got = series(&translate_with(&req, &opts));
    assert_eq!(
        got["g"],
        vec![labels(&[
            ("job", "shop/api"),
            ("instance", "pod-1"),
            ("otel_scope_name", "io.lib"),
            ("otel_scope_version", "1.2.3"),
            (
                "otel_scope_schema_url",
                "https://opentelemetry.io/schemas/1.24.0"
            ),
            ("otel_scope_lib_tier", "core"),
        ])]
    );
    // target_info is the resource's: no scope labels.
    assert_eq!(
        got["target_info"],
        vec![labels(&[
            ("job", "shop/api"),
            ("instance", "pod-1"),
            ("k8s_pod_name", "p1")
        ])]
    );
    // A scope without a name gives no scope labels.
    let unnamed = request(
        &RESOURCE[..3],
        Some(InstrumentationScope {
            version: "9".into(),
            ..Default::default()
        }),
        "",
        vec![gauge("g", vec![number(&[], 1.0)])],
    );
    assert_eq!(
        series(&translate_with(&unnamed, &opts))["g"],
        vec![labels(&[("job", "shop/api"), ("instance", "pod-1")])]
    );
}

#[test]
fn no_translation_keeps_names_and_attribute_keys() {
    let mut g = gauge(
        "http.server.active",
        vec![number(&[("http.method", "GET")], 1.0)],
    );
    g.unit = "{request}".into();
    let mut c = metric(
        "http.server.requests",
        m::metric::Data::Sum(m::Sum {
            data_points: vec![number(&[], 5.0)],
            aggregation_temporality: 2,
            is_monotonic: true,
        }),
    );
    c.unit = "s".into();
    let req = request(&RESOURCE[..3], None, "", vec![g, c]);
    let with = |strategy| {
        series(&translate_with(
            &req,
            &TranslateOptions {
                strategy,
                ..Default::default()
            },
        ))
    };
    let got = with(TranslationStrategy::NoTranslation);
    assert_eq!(
        got["http.server.active"],
        vec![labels(&[
            ("job", "shop/api"),
            ("instance", "pod-1"),
            ("http.method", "GET")
        ])]
    );
    assert!(got.contains_key("http.server.requests"), "{got:?}");
    let got = with(TranslationStrategy::NoUtf8EscapingWithSuffixes);
    assert!(
        got.contains_key("http.server.requests_seconds_total"),
        "{got:?}"
    );
    assert!(got["http.server.active"][0].contains_key("http.method"));
    let got = with(TranslationStrategy::UnderscoreEscapingWithoutSuffixes);
    assert!(got.contains_key("http_server_requests"), "{got:?}");
    assert!(got["http_server_active"][0].contains_key("http_method"));
}

fn delta_request() -> ExportMetricsServiceRequest {
    let sum = metric(
        "jobs.done",
        m::metric::Data::Sum(m::Sum {
            data_points: vec![number(&[], 3.0)],
            aggregation_temporality: DELTA,
            is_monotonic: true,
        }),
    );
    let hist = metric(
        "latency",
        m::metric::Data::Histogram(m::Histogram {
            data_points: vec![m::HistogramDataPoint {
                start_time_unix_nano: T - 60_000_000_000,
                time_unix_nano: T,
                count: 2,
                sum: Some(3.0),
                bucket_counts: vec![1, 1],
                explicit_bounds: vec![1.0],
                ..Default::default()
            }],
            aggregation_temporality: DELTA,
        }),
    );
    let exp = metric(
        "sizes",
        m::metric::Data::ExponentialHistogram(m::ExponentialHistogram {
            data_points: vec![m::ExponentialHistogramDataPoint {
                start_time_unix_nano: T - 60_000_000_000,
                time_unix_nano: T,
                count: 1,
                sum: Some(2.0),
                scale: 0,
                positive: Some(Buckets {
                    offset: 0,
                    bucket_counts: vec![1],
                }),
                ..Default::default()
            }],
            aggregation_temporality: DELTA,
        }),
    );
    request(&RESOURCE[..3], None, "", vec![sum, hist, exp])
}

#[test]
fn delta_refused_by_default() {
    let t = translate(&delta_request());
    assert!(t.series.is_empty());
    assert_eq!(t.refused[&Refusal::Delta].0, 3);
}

/// `--enable-feature=otlp-native-delta-ingestion`: values as they are,
/// metadata type `unknown`, start times ignored (no created-timestamp zero
/// even with the created-timestamp flag), exponential histograms as gauge
/// histograms; names as for cumulative (`_total` on a monotonic sum).
#[test]
fn native_delta_ingestion_stores_deltas_as_they_are() {
    let opts = TranslateOptions {
        native_delta_ingestion: true,
        created_zero: true,
        ..Default::default()
    };
    let t = translate_with(&delta_request(), &opts);
    assert!(t.refused.is_empty(), "{:?}", t.refused);
    let by_name: BTreeMap<String, &SeriesSamples> =
        t.series.iter().map(|s| (s.labels.to_string(), s)).collect();
    let total = t
        .series
        .iter()
        .find(|s| s.labels.metric_name() == Some("jobs_done_total"))
        .expect("jobs_done_total");
    assert_eq!(total.samples[0].v.to_bits(), 3.0f64.to_bits());
    assert!(t.series.iter().all(|s| s.created.is_empty()), "{by_name:?}");
    let inf = t
        .series
        .iter()
        .find(|s| {
            s.labels.metric_name() == Some("latency_bucket")
                && s.labels.iter().any(|l| &*l.value == "+Inf")
        })
        .expect("latency_bucket +Inf");
    assert_eq!(inf.samples[0].v.to_bits(), 2.0f64.to_bits());
    let sizes = t
        .series
        .iter()
        .find(|s| s.labels.metric_name() == Some("sizes"))
        .expect("sizes");
    match &sizes.histograms[0].h {
        HistogramValue::Int(h) => assert_eq!(h.counter_reset_hint, CounterResetHint::Gauge),
        other => panic!("{other:?}"),
    }
    for md in &t.metadata {
        assert_eq!(md.metric_type, "unknown", "{md:?}");
    }
}

/// Two points 56 years apart would ask for 11.8 million `target_info`
/// samples (one per 2.5 minutes, as Prometheus); past
/// `max_target_info_samples` the resource's `target_info` is skipped and
/// counted, its points kept.
#[test]
fn target_info_over_a_hostile_span_is_skipped() {
    let mut old = number(&[("p", "old")], 1.0);
    old.time_unix_nano = 1_000_000;
    let req = request(
        &RESOURCE,
        None,
        "",
        vec![gauge("g", vec![old, number(&[("p", "new")], 2.0)])],
    );
    let t = translate(&req);
    assert_eq!(t.target_info_skipped, 1);
    let got = series(&t);
    assert!(!got.contains_key("target_info"), "{got:?}");
    assert_eq!(got["g"].len(), 2);
    // Within the bound: one sample per step, the last at the newest point.
    let mut recent = number(&[("p", "old")], 1.0);
    recent.time_unix_nano = T - 600_000_000_000;
    let req = request(
        &RESOURCE,
        None,
        "",
        vec![gauge("g", vec![recent, number(&[("p", "new")], 2.0)])],
    );
    let t = translate(&req);
    assert_eq!(t.target_info_skipped, 0);
    let info = t
        .series
        .iter()
        .find(|s| s.labels.metric_name() == Some("target_info"))
        .expect("target_info");
    let ts: Vec<i64> = info.samples.iter().map(|s| s.t).collect();
    let last = (T / 1_000_000) as i64;
    let first = last - 600_000;
    assert_eq!(
        ts,
        vec![
            first,
            first + 150_000,
            first + 300_000,
            first + 450_000,
            last
        ]
    );
}
