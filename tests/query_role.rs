//! The query role (`tidemark query`) over real nodes on 127.0.0.1.
//!
//! What "equal" means here: the query role over an HA pair A/B (external
//! label `replica=a|b`, `--query.replica-label=replica`) and a shard C
//! (external label `shard=c`) must answer exactly (the JSON `data`, every
//! value and timestamp) what ONE node R answers when it holds:
//! - A's samples up to A's gap, then B's for the rest (the
//!   de-duplication rule of `src/query/dedup.rs`, Thanos's: the answer
//!   moves to B across A's gap and stays there). B has no sample at the
//!   gap's first step: that sample falls inside the penalty window after
//!   A's last one, and whether it is passed over depends on where a loaded
//!   range starts (the unit tests of `dedup.rs` cover it);
//! - C's series with C's external label `shard="c"` added, as the query
//!   role attaches it.
//!
//! B's samples are 3 ms after A's before A's gap, and 3 ms before A's
//! after it (A restarted with another scrape phase), so picking the
//! wrong replica or interleaving them changes timestamps and fails the
//! comparison.
//!
//! De-duplication runs over what one selector loads, so its choice
//! depends on where the loaded range starts: on the replica with the
//! earliest sample in it. The phases above make that A before the gap
//! and B after it for every range these calls load (they start at a grid
//! time + 1 ms or at a 7 s phase), which is what R holds.
//! Reads end a second after the last samples: a read ending between two
//! replicas' last samples takes the one in range when the replica taken
//! has nothing more (no sample lost at a hand-over), which R cannot model.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::http::{encode, get, metric, remote_write_v1, FloatPoint};
use common::proc::{
    free_port, start_role, start_tidemark_with, tidemark_bin, wait_ready, wait_until, Proc,
};

const STEP: i64 = 15_000;
/// 2023-11-14T00:00:00Z, a block-range boundary.
const T0: i64 = 1_699_920_000_000;
/// Samples per series (one hour).
const N: i64 = 240;
/// A's gap: samples `GAP.0..GAP.1` are missing on A.
const GAP: (i64, i64) = (100, 110);
/// A's timestamps: 2 ms after the 15 s grid (so a range loaded from a
/// grid time + 1 ms, as `[1m]` windows at aligned steps are, starts on A).
const A_SKEW: i64 = 2;
/// B's: 3 ms after A's.
const B_SKEW: i64 = 5;
/// A's after its gap (it restarted with another scrape phase): after B's.
const A_SKEW_AFTER_GAP: i64 = 8;

/// Starts `tidemark query` on `addr` with `extra` flags.
fn start_query(addr: &str, extra: &[String]) -> Proc {
    start_role("query", addr, extra)
}

fn node(dir: &Path, name: &str, extra: &[&str]) -> (String, Proc) {
    let addr = format!("127.0.0.1:{}", free_port());
    let mut p = start_tidemark_with(&addr, &dir.join(name), extra);
    wait_ready(&mut p, &addr, Duration::from_secs(30));
    (addr, p)
}

/// Starts `tidemark store` on the bucket of `objstore` (the flag) with its
/// cache in `cache`, syncing every second, and waits until it is ready.
fn start_store(objstore: &str, cache: &Path) -> (String, Proc) {
    let addr = format!("127.0.0.1:{}", free_port());
    let mut p = start_role(
        "store",
        &addr,
        &[
            objstore.to_string(),
            format!("--store.cache-dir={}", cache.display()),
            "--store.sync-interval=1s".into(),
        ],
    );
    wait_ready(&mut p, &addr, Duration::from_secs(60));
    (addr, p)
}

type Series = Vec<(&'static str, String)>;

/// The HA pair's series (12) and the shard's (6 histogram buckets + 1).
fn ha_series() -> Vec<Series> {
    let mut out = Vec::new();
    for i in 0..3 {
        for mode in ["idle", "user"] {
            out.push(vec![
                ("__name__", "demo_cpu_usage_seconds_total".to_string()),
                ("instance", format!("i{i}")),
                ("mode", mode.to_string()),
            ]);
        }
        for ty in ["free", "used"] {
            out.push(vec![
                ("__name__", "demo_memory_usage_bytes".to_string()),
                ("instance", format!("i{i}")),
                ("type", ty.to_string()),
            ]);
        }
    }
    out
}

fn shard_series() -> Vec<Series> {
    let mut out = Vec::new();
    for path in ["/a", "/b"] {
        for le in ["0.1", "0.5", "+Inf"] {
            out.push(vec![
                (
                    "__name__",
                    "demo_api_request_duration_seconds_bucket".to_string(),
                ),
                ("le", le.to_string()),
                ("path", path.to_string()),
            ]);
        }
    }
    out.push(vec![
        (
            "__name__",
            "demo_batch_last_success_timestamp_seconds".to_string(),
        ),
        ("instance", "i0".to_string()),
    ]);
    out
}

/// The e2e's HA pair's series: what the compat set's queries select on
/// the three `prometheus-demo-service` instances it expects
/// (`demo.promlabs.com:10000..10002`, job `demo`), except the shard's.
fn compat_ha_series() -> Vec<Series> {
    let mut out = Vec::new();
    for i in 0..3 {
        let common = || {
            vec![
                ("instance", format!("demo.promlabs.com:1000{i}")),
                ("job", "demo".to_string()),
            ]
        };
        let with = |name: &str, extra: &[(&'static str, &str)]| {
            let mut s = vec![("__name__", name.to_string())];
            s.extend(common());
            s.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
            s
        };
        for ty in ["buffers", "free", "used"] {
            out.push(with("demo_memory_usage_bytes", &[("type", ty)]));
        }
        for mode in ["idle", "user"] {
            out.push(with("demo_cpu_usage_seconds_total", &[("mode", mode)]));
        }
        out.push(with("demo_num_cpus", &[]));
        out.push(with("demo_disk_usage_bytes", &[]));
        out.push(with("demo_intermittent_metric", &[]));
    }
    out
}

/// The e2e's shard's series: the request-duration histogram and the batch
/// timestamps of the three instances.
fn compat_shard_series() -> Vec<Series> {
    let mut out = Vec::new();
    for i in 0..3 {
        let instance = format!("demo.promlabs.com:1000{i}");
        for path in ["/api/bar", "/api/foo"] {
            let series = |suffix: &str, le: Option<&str>| {
                let mut s = vec![
                    (
                        "__name__",
                        format!("demo_api_request_duration_seconds_{suffix}"),
                    ),
                    ("instance", instance.clone()),
                    ("job", "demo".to_string()),
                    ("path", path.to_string()),
                ];
                if let Some(le) = le {
                    s.push(("le", le.to_string()));
                }
                s
            };
            for le in ["0.1", "0.5", "+Inf"] {
                out.push(series("bucket", Some(le)));
            }
            out.push(series("count", None));
            out.push(series("sum", None));
        }
        out.push(vec![
            (
                "__name__",
                "demo_batch_last_success_timestamp_seconds".to_string(),
            ),
            ("instance", instance),
            ("job", "demo".to_string()),
        ]);
    }
    out
}

/// The value of series `n` (of its set) at sample `k`: counters grow,
/// gauges wander, buckets are cumulative.
fn value(s: &Series, n: usize, k: i64) -> f64 {
    let name = &s[0].1;
    let label = |key: &str| s.iter().find(|(l, _)| *l == key).map(|(_, v)| v.as_str());
    if name.ends_with("_total") {
        (k * (n as i64 + 1)) as f64 * 0.5
    } else if name.ends_with("_bucket") || name.ends_with("_count") {
        let le = match label("le") {
            Some("0.1") => 1,
            Some("0.5") => 3,
            _ => 4,
        };
        (k * le * (n as i64 / 3 + 1)) as f64
    } else if name.ends_with("_sum") {
        (k * (n as i64 + 2)) as f64 * 0.37
    } else if name.contains("timestamp") {
        ((T0 + k * STEP) / 1000 - (k % 7) * 60) as f64
    } else if name == "demo_num_cpus" {
        (n % 3 + 1) as f64
    } else if name == "demo_disk_usage_bytes" {
        (1_000_000 + k * 1_000 * (n as i64 + 1) + (k % 9) * 333) as f64
    } else {
        1000.0 + ((k * 7 + n as i64 * 13) % 100) as f64
    }
}

/// Whether series `s` has a sample at `k`: `demo_intermittent_metric`
/// is there 10 minutes out of 20 (staleness), the others always.
fn present(s: &Series, k: i64) -> bool {
    s[0].1 != "demo_intermittent_metric" || (k / 40) % 2 == 0
}

/// Writes samples `ks` of `series` at `T0 + k*STEP + skew`, with `extra`
/// labels appended, in requests of 60 steps.
fn write(addr: &str, series: &[Series], ks: &[i64], skew: i64, extra: &[(&'static str, &str)]) {
    let labels: Vec<Vec<(&str, &str)>> = series
        .iter()
        .map(|s| {
            let mut l: Vec<(&str, &str)> = s.iter().map(|(k, v)| (*k, v.as_str())).collect();
            l.extend_from_slice(extra);
            l.sort();
            l
        })
        .collect();
    for chunk in ks.chunks(60) {
        let points: Vec<FloatPoint<'_>> = chunk
            .iter()
            .flat_map(|&k| {
                labels
                    .iter()
                    .enumerate()
                    .filter(move |&(n, _)| present(&series[n], k))
                    .map(move |(n, l)| (&l[..], T0 + k * STEP + skew, value(&series[n], n, k)))
            })
            .collect();
        remote_write_v1(addr, &points);
    }
}

/// Remote-writes metric metadata `(family, type, help)` (no samples).
fn write_metadata(addr: &str, families: &[(&str, i32, &str)]) {
    use tidemark_proto::prometheus as pb;
    let req = pb::WriteRequest {
        metadata: families
            .iter()
            .map(|(name, ty, help)| pb::MetricMetadata {
                r#type: *ty,
                metric_family_name: name.to_string(),
                help: help.to_string(),
                unit: String::new(),
            })
            .collect(),
        ..Default::default()
    };
    let (status, resp) = common::http::remote_write_request_status(addr, &req);
    assert_eq!(status, 204, "{resp}");
}

/// The whole answer (status code and parsed body).
fn call(addr: &str, path: &str) -> (u16, serde_json::Value) {
    let (status, body) = get(addr, path).unwrap_or_else(|| panic!("{addr}{path}: no answer"));
    let v = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"));
    (status, v)
}

/// `data` of a successful answer without warnings.
fn data(addr: &str, path: &str) -> serde_json::Value {
    let (status, v) = call(addr, path);
    assert_eq!(status, 200, "{addr}{path}: {v}");
    assert_eq!(v["status"], "success", "{v}");
    assert!(v.get("warnings").is_none(), "{addr}{path}: warnings {v}");
    v["data"].clone()
}

fn secs(ms: i64) -> String {
    format!("{}.{:03}", ms / 1000, ms % 1000)
}

/// PromQL over both metric sets, in the spirit of the compat set
/// (`../shared/promql-compliance/promql-test-queries.yml`): selectors and
/// matchers, offsets, rate family, over_time, aggregations, binary
/// matching, histogram_quantile, subqueries, label functions, absent.
const QUERIES: &[&str] = &[
    "demo_memory_usage_bytes",
    "demo_memory_usage_bytes{type=\"free\"}",
    "{__name__=~\"demo_memory.*\", instance!=\"i0\"}",
    "demo_memory_usage_bytes offset 5m",
    "timestamp(demo_memory_usage_bytes)",
    "rate(demo_cpu_usage_seconds_total[1m])",
    "irate(demo_cpu_usage_seconds_total[5m])",
    "increase(demo_cpu_usage_seconds_total[5m])",
    "sum by (mode) (rate(demo_cpu_usage_seconds_total[5m]))",
    "avg_over_time(demo_memory_usage_bytes[2m])",
    "delta(demo_memory_usage_bytes[3m])",
    "topk(2, demo_memory_usage_bytes)",
    "max by (instance) (demo_memory_usage_bytes) / on(instance) group_left sum by (instance) (demo_cpu_usage_seconds_total)",
    "histogram_quantile(0.9, sum by (le) (rate(demo_api_request_duration_seconds_bucket[5m])))",
    "time() - demo_batch_last_success_timestamp_seconds",
    "count(demo_cpu_usage_seconds_total) + count(demo_api_request_duration_seconds_bucket)",
    "max_over_time(rate(demo_cpu_usage_seconds_total[1m])[5m:30s])",
    "label_replace(demo_memory_usage_bytes, \"x\", \"$1\", \"instance\", \"i(.*)\")",
    "absent(nonexistent_metric)",
];

/// The compat set: PromLabs' compliance tester's query templates, read
/// where the other conformance data lives (never copied into this
/// repository); a checkout without it fails, it does not skip.
const COMPAT_QUERIES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../shared/promql-compliance/promql-test-queries.yml"
);

/// The values of each `{{.name}}` placeholder, as the compliance tester
/// expands them (`testVariantArgs` in github.com/prometheus/compliance,
/// promql/testcases/expand.go).
const VARIANTS: &[(&str, &[&str])] = &[
    ("range", &["1s", "15s", "1m", "5m", "15m", "1h"]),
    ("offset", &["1m", "5m", "10m"]),
    (
        "simpleAggrOp",
        &["sum", "avg", "max", "min", "count", "stddev", "stdvar"],
    ),
    (
        "simpleTimeAggrOp",
        &[
            "sum", "avg", "max", "min", "count", "stddev", "stdvar", "absent", "last",
        ],
    ),
    ("topBottomOp", &["topk", "bottomk"]),
    (
        "quantile",
        &[
            "-0.5", "0.1", "0.5", "0.75", "0.95", "0.90", "0.99", "1", "1.5",
        ],
    ),
    ("arithBinOp", &["+", "-", "*", "/", "%", "^"]),
    ("compBinOp", &["==", "!=", "<", ">", "<=", ">="]),
    (
        "binOp",
        &[
            "+", "-", "*", "/", "%", "^", "==", "!=", "<", ">", "<=", ">=",
        ],
    ),
    (
        "simpleMathFunc",
        &[
            "abs", "ceil", "floor", "exp", "sqrt", "ln", "log2", "log10", "round",
        ],
    ),
    ("extrapolatedRateFunc", &["delta", "rate", "increase"]),
    ("clampFunc", &["clamp_min", "clamp_max"]),
    ("instantRateFunc", &["idelta", "irate"]),
    (
        "dateFunc",
        &[
            "day_of_month",
            "day_of_week",
            "days_in_month",
            "hour",
            "minute",
            "month",
            "year",
        ],
    ),
    ("smoothingFactor", &["0.1", "0.5", "0.8"]),
    ("trendFactor", &["0.1", "0.5", "0.8"]),
];

/// `should_fail` queries of the compat set this engine answers: written
/// for Prometheus 2, whose label names were `[a-zA-Z_][a-zA-Z0-9_]*`;
/// Prometheus 3 (and this engine, `valid_label_name` in
/// src/promql/eval/call.rs) accepts any non-empty UTF-8 name, `~invalid`
/// included. The query role must then answer as R does.
const ACCEPTED: &[&str] = &[
    "label_replace(demo_num_cpus, \"~invalid\", \"\", \"src\", \"(.*)\")",
    "label_join(demo_num_cpus, \"~invalid\", \"-\", \"instance\")",
];

/// One expanded query of the compat set.
struct CompatQuery {
    query: String,
    should_fail: bool,
    skip_comparison: bool,
}

/// Every combination of `args`' values substituted into `template`, the
/// first argument outermost, a repeated argument taking one value (as the
/// tester's `getVariants`).
fn expand(template: &str, args: &[String], out: &mut Vec<String>) {
    let Some(first) = args.first() else {
        assert!(
            !template.contains("{{"),
            "unexpanded placeholder: {template}"
        );
        out.push(template.to_string());
        return;
    };
    let rest: Vec<String> = args.iter().filter(|a| *a != first).cloned().collect();
    let (_, values) = VARIANTS
        .iter()
        .find(|(name, _)| name == first)
        .unwrap_or_else(|| panic!("{COMPAT_QUERIES}: unknown variant argument {first:?}"));
    for v in *values {
        expand(
            &template.replace(&format!("{{{{.{first}}}}}"), v),
            &rest,
            out,
        );
    }
}

/// The compat set, expanded.
fn compat_queries() -> Vec<CompatQuery> {
    let text = std::fs::read_to_string(COMPAT_QUERIES).unwrap_or_else(|e| {
        panic!(
            "{COMPAT_QUERIES}: {e}: the compat query set (issue 20) must be checked out \
             next to this repository, in ../shared/promql-compliance"
        )
    });
    let doc: serde_yaml::Value =
        serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{COMPAT_QUERIES}: {e}"));
    let cases = doc["test_cases"]
        .as_sequence()
        .unwrap_or_else(|| panic!("{COMPAT_QUERIES}: no test_cases"));
    let mut out = Vec::new();
    for case in cases {
        let template = case["query"]
            .as_str()
            .unwrap_or_else(|| panic!("{COMPAT_QUERIES}: a case without query: {case:?}"));
        let args: Vec<String> = case["variant_args"]
            .as_sequence()
            .map(|a| {
                a.iter()
                    .map(|v| v.as_str().expect("variant argument").to_string())
                    .collect()
            })
            .unwrap_or_default();
        let flag = |key: &str| case[key].as_bool().unwrap_or(false);
        let mut queries = Vec::new();
        expand(template, &args, &mut queries);
        out.extend(queries.into_iter().map(|query| CompatQuery {
            query,
            should_fail: flag("should_fail"),
            skip_comparison: flag("skip_comparison"),
        }));
    }
    assert!(!out.is_empty(), "{COMPAT_QUERIES}: no queries");
    out
}

/// The compared calls: every query as instant (before, inside and after
/// A's gap) and range (15 s and 60 s steps), series, labels and values.
fn calls() -> Vec<String> {
    let mut out = Vec::new();
    // Ends a second after the last samples: both replicas' last samples
    // are in range (see the module doc on the edge).
    let (start, end) = (T0 + 10 * 60_000 + 7_000, T0 + (N - 1) * STEP + 1_000);
    for q in QUERIES {
        for step in [15, 60] {
            out.push(format!(
                "/api/v1/query_range?query={}&start={}&end={}&step={step}",
                encode(q),
                secs(start),
                secs(end)
            ));
        }
        for t in [T0 + 20 * 60_000, T0 + (GAP.0 + 4) * STEP + 7_000, end] {
            out.push(format!(
                "/api/v1/query?query={}&time={}",
                encode(q),
                secs(t)
            ));
        }
    }
    let window = format!("start={}&end={}", secs(T0), secs(end));
    for m in [
        "demo_memory_usage_bytes",
        "{instance=\"i1\"}",
        "{__name__=~\"demo_.+\"}",
        "{shard=\"c\"}",
    ] {
        out.push(format!("/api/v1/series?match[]={}&{window}", encode(m)));
    }
    out.push(format!("/api/v1/labels?{window}"));
    out.push(format!(
        "/api/v1/labels?match[]={}&{window}",
        encode("demo_cpu_usage_seconds_total")
    ));
    for name in ["instance", "__name__", "shard", "replica"] {
        out.push(format!("/api/v1/label/{name}/values?{window}"));
    }
    // No start/end: all time.
    out.push("/api/v1/labels".into());
    out.push("/api/v1/label/instance/values".into());
    out.push(format!(
        "/api/v1/series?match[]={}",
        encode("demo_memory_usage_bytes")
    ));
    out.push("/api/v1/metadata".into());
    out.push("/api/v1/metadata?metric=demo_memory_usage_bytes".into());
    out.push("/api/v1/metadata?limit=2".into());
    out
}

/// The value of `name{endpoint="<endpoint>"...}` summed over its other
/// labels, on `/metrics`.
fn endpoint_metric(addr: &str, name: &str, endpoint: &str) -> f64 {
    let (_, body) = get(addr, "/metrics").unwrap();
    let tag = format!("endpoint=\"{endpoint}\"");
    body.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with('{') && l.contains(&tag))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Fails naming the call and the first difference (answers are long).
fn assert_same(got: &serde_json::Value, want: &serde_json::Value, path: &str) {
    if got == want {
        return;
    }
    let (g, w) = (got.to_string(), want.to_string());
    let at = g
        .bytes()
        .zip(w.bytes())
        .position(|(x, y)| x != y)
        .unwrap_or(g.len().min(w.len()));
    let from = at.saturating_sub(300);
    panic!(
        "{path}: answers differ at byte {at}\n got: …{}\nwant: …{}",
        &g[from..(at + 200).min(g.len())],
        &w[from..(at + 200).min(w.len())]
    );
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// The figure queries: a selector, a rate aggregation, a histogram quantile.
const FIGURE_QUERIES: [&str; 3] = [
    "demo_memory_usage_bytes",
    "sum by (mode) (rate(demo_cpu_usage_seconds_total[5m]))",
    "histogram_quantile(0.9, sum by (le) (rate(demo_api_request_duration_seconds_bucket[5m])))",
];

/// Median latencies of `query_range` of [`FIGURE_QUERIES`] over
/// `[start, end]` at `step` s, on `direct` and on `through` (each after one
/// warm-up, `runs` times), printed as `FIGURE <what> ...` lines.
fn latency_figures(
    direct: &str,
    through: &str,
    (start, end, step): (i64, i64, u32),
    runs: usize,
    what: &str,
) {
    for query in FIGURE_QUERIES {
        let path = format!(
            "/api/v1/query_range?query={}&start={}&end={}&step={step}",
            encode(query),
            secs(start),
            secs(end)
        );
        let time = |addr: &str| {
            data(addr, &path);
            median(
                (0..runs)
                    .map(|_| {
                        let t = Instant::now();
                        data(addr, &path);
                        t.elapsed()
                    })
                    .collect(),
            )
        };
        let (d, t) = (time(direct), time(through));
        eprintln!("FIGURE {what} {query:?}: one node {d:?}, query role {t:?}");
    }
}

#[test]
fn query_role_over_ha_pair_and_shard_answers_like_one_node_and_handles_failures() {
    let localhost: Vec<std::net::SocketAddr> =
        std::net::ToSocketAddrs::to_socket_addrs(&("localhost", 1))
            .unwrap()
            .collect();
    assert!(
        localhost.iter().all(|a| a.ip().is_loopback() && a.is_ipv4()),
        "this test reaches node C as dns+localhost:PORT and needs localhost to be 127.0.0.1 only: {localhost:?}"
    );
    let tmp = tempfile::tempdir().unwrap();
    let (a, mut pa) = node(tmp.path(), "a", &["--external-label=replica=a"]);
    let (b, _pb) = node(tmp.path(), "b", &["--external-label=replica=b"]);
    let (c, mut pc) = node(tmp.path(), "c", &["--external-label=shard=c"]);
    let (r, _pr) = node(tmp.path(), "r", &[]);
    let c_port = c.rsplit(':').next().unwrap().to_string();

    let ha = ha_series();
    let all: Vec<i64> = (0..N).collect();
    // A until its gap, then (restarted, a new scrape phase) 6 ms late.
    write(&a, &ha, &(0..GAP.0).collect::<Vec<_>>(), A_SKEW, &[]);
    write(
        &a,
        &ha,
        &(GAP.1..N).collect::<Vec<_>>(),
        A_SKEW_AFTER_GAP,
        &[],
    );
    // B lacks sample GAP.0: the one the penalty passes over after A's
    // last sample, whose presence depends on where a loaded range starts.
    let b_ks: Vec<i64> = all.iter().copied().filter(|&k| k != GAP.0).collect();
    write(&b, &ha, &b_ks, B_SKEW, &[]);
    write(&c, &shard_series(), &all, 0, &[]);
    // R: A until its gap, B from two intervals past A's last sample.
    let last_a = GAP.0 - 1;
    let first_b = last_a + 2;
    write(&r, &ha, &(0..=last_a).collect::<Vec<_>>(), A_SKEW, &[]);
    write(&r, &ha, &(first_b..N).collect::<Vec<_>>(), B_SKEW, &[]);
    write(&r, &shard_series(), &all, 0, &[("shard", "c")]);
    // Metadata (1 = counter, 2 = gauge, 3 = histogram).
    let ha_meta = [
        ("demo_cpu_usage_seconds_total", 1, "CPU seconds."),
        ("demo_memory_usage_bytes", 2, "Memory in use."),
    ];
    let c_meta = [("demo_api_request_duration_seconds", 3, "Request latency.")];
    for (addr, m) in [(&a, &ha_meta[..]), (&b, &ha_meta[..]), (&c, &c_meta[..])] {
        write_metadata(addr, m);
        write_metadata(&r, m);
    }

    let q = format!("127.0.0.1:{}", free_port());
    let mut pq = start_query(
        &q,
        &[
            format!("--endpoint={a}"),
            format!("--endpoint={b}"),
            format!("--endpoint=dns+localhost:{c_port}"),
            "--query.replica-label=replica".into(),
            "--endpoint.refresh-interval=500ms".into(),
            "--endpoint.timeout=5s".into(),
        ],
    );
    wait_ready(&mut pq, &q, Duration::from_secs(30));
    assert_eq!(metric(&q, "tidemark_query_endpoints"), Some(3.0));
    assert_eq!(endpoint_metric(&q, "tidemark_query_endpoint_up", &c), 1.0);

    let calls = calls();
    for path in &calls {
        assert_same(&data(&q, path), &data(&r, path), path);
    }
    eprintln!(
        "{} calls: query role over A, B, C == single node R",
        calls.len()
    );
    for e in [&a, &b, &c] {
        assert!(
            endpoint_metric(&q, "tidemark_query_endpoint_requests_total", e) > 0.0,
            "{e} never called"
        );
        assert_eq!(endpoint_metric(&q, "tidemark_query_endpoint_up", e), 1.0);
    }
    let buckets = "tidemark_query_endpoint_request_duration_seconds_count";
    assert!(endpoint_metric(&q, buckets, &a) > 0.0);

    // Figure: latency through the query role vs directly on R (median of
    // 15 runs after one warm-up).
    let end = T0 + (N - 1) * STEP;
    latency_figures(
        &r,
        &q,
        (T0, end, 15),
        15,
        "query_range 1h/15s, 3 endpoints:",
    );

    // One HA replica killed: answers stay complete (B's data), with a
    // warning naming the missing replica, no error.
    pa.0.kill().unwrap();
    let _ = pa.0.wait();
    for query in [
        "demo_memory_usage_bytes",
        "rate(demo_cpu_usage_seconds_total[5m])",
    ] {
        let path = format!(
            "/api/v1/query_range?query={}&start={}&end={}&step=60",
            encode(query),
            secs(T0 + 600_000),
            secs(end)
        );
        let want = data(&b, &path);
        let (status, got) = call(&q, &path);
        assert_eq!(status, 200, "{got}");
        assert_same(&got["data"], &want, &path);
        let w = got["warnings"].to_string();
        assert!(w.contains(&a) && w.contains("another replica"), "{got}");
    }

    // One shard killed: fails by default (503 naming it), warns with
    // partial_response=true.
    pc.0.kill().unwrap();
    let _ = pc.0.wait();
    let path = format!(
        "/api/v1/query?query={}&time={}",
        encode("demo_memory_usage_bytes"),
        secs(end)
    );
    let c_ip = format!("127.0.0.1:{c_port}");
    let (status, v) = call(&q, &path);
    assert_eq!(status, 503, "{v}");
    assert_eq!(v["errorType"], "unavailable", "{v}");
    assert!(v["error"].as_str().unwrap().contains(&c_ip), "{v}");
    for p in [
        path.clone(),
        format!("/api/v1/labels?start={}&end={}", secs(T0), secs(end)),
    ] {
        let (status, v) = call(&q, &format!("{p}&partial_response=true"));
        assert_eq!(status, 200, "{v}");
        assert!(v["warnings"].to_string().contains(&c_ip), "{v}");
        assert!(!v["data"].to_string().contains("demo_api"), "{v}");
    }
    let (status, v) = call(&q, &format!("{path}&partial_response=maybe"));
    assert_eq!(status, 400, "{v}");

    // The flag: partial by default, the request can still refuse it; a
    // silent endpoint (accepts, never answers) is cut at
    // --endpoint.timeout.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_addr = silent.local_addr().unwrap().to_string();
    let held = std::thread::spawn(move || {
        let conns: Vec<_> = silent.incoming().take(64).collect();
        drop(conns);
    });
    let q2 = format!("127.0.0.1:{}", free_port());
    let mut pq2 = start_query(
        &q2,
        &[
            format!("--endpoint={b}"),
            format!("--endpoint={c_ip}"),
            format!("--endpoint={silent_addr}"),
            "--query.replica-label=replica".into(),
            "--query.partial-response".into(),
            "--endpoint.timeout=1s".into(),
            "--query.max-samples=1000".into(),
        ],
    );
    wait_ready(&mut pq2, &q2, Duration::from_secs(30));
    // What endpoints send counts against --query.max-samples (12 series x
    // 240 samples > 1000): 422, not a growing process.
    let big = format!(
        "/api/v1/query_range?query={}&start={}&end={}&step=60",
        encode("demo_memory_usage_bytes + demo_cpu_usage_seconds_total"),
        secs(T0),
        secs(end)
    );
    let (status, v) = call(&q2, &big);
    assert_eq!(status, 422, "{v}");
    assert!(
        v["error"].as_str().unwrap().contains("too many samples"),
        "{v}"
    );
    // Calls it does not fan out say so.
    let (status, v) = call(&q2, "/api/v1/status/tsdb");
    assert_eq!(status, 503, "{v}");
    assert!(v["error"].as_str().unwrap().contains("query role"), "{v}");
    let t = Instant::now();
    let (status, v) = call(&q2, &path);
    assert_eq!(status, 200, "{v}");
    let w = v["warnings"].to_string();
    assert!(w.contains(&c_ip) && w.contains(&silent_addr), "{v}");
    assert_eq!(v["data"]["result"].as_array().map(Vec::len), Some(6), "{v}");
    let (status, v) = call(&q2, &format!("{path}&partial_response=false"));
    assert_eq!(status, 503, "{v}");
    assert!(t.elapsed() < Duration::from_secs(15), "{:?}", t.elapsed());
    assert!(endpoint_metric(&q2, "tidemark_query_endpoint_requests_total", &silent_addr) > 0.0);
    let (_, body) = get(&q2, "/metrics").unwrap();
    assert!(
        body.contains(&format!(
            "tidemark_query_endpoint_requests_total{{endpoint=\"{silent_addr}\",call=\"read\",result=\"timeout\"}}"
        )),
        "{body}"
    );
    pq2.terminate(Duration::from_secs(30));
    pq.terminate(Duration::from_secs(30));
    drop(held);
}

#[test]
fn query_role_over_a_store_and_a_node_answers_like_one_node_and_skips_by_time() {
    use common::weed::{runtime, s3_store, s3_yaml, Weed};
    let tmp = tempfile::tempdir().unwrap();
    let weed = Weed::start(&tmp.path().join("weed"));
    let bucket = s3_store(&weed.endpoint());
    let cfg = tmp.path().join("bucket.yml");
    std::fs::write(&cfg, s3_yaml(&weed.endpoint())).unwrap();
    let series = ha_series();
    let hours = |from: i64, to: i64| -> Vec<i64> { (from * 240..to * 240).collect() };

    // Node S ships its first 2 h block, then goes away with its data.
    let objstore = format!("--objstore.config.file={}", cfg.display());
    let (s, mut ps) = node(
        tmp.path(),
        "s",
        &[
            &objstore,
            "--external-label=replica=s",
            "--compaction-interval=200ms",
            "--shipper.sync-interval=1s",
            "--shipper.max-backoff=1s",
        ],
    );
    write(&s, &series, &hours(0, 4), 0, &[]);
    let rt = runtime();
    wait_until("a block in the bucket", Duration::from_secs(60), || {
        rt.block_on(bucket.list_with_delimiter(None))
            .is_ok_and(|l| !l.common_prefixes.is_empty())
            && rt
                .block_on(async {
                    let l = bucket.list_with_delimiter(None).await?;
                    let p = &l.common_prefixes[0];
                    bucket.head(&p.child("meta.json")).await
                })
                .is_ok()
    });
    ps.terminate(Duration::from_secs(30));
    std::fs::remove_dir_all(tmp.path().join("s")).unwrap();

    // The store serves the block; node N holds hours 4..6; R all of it.
    let (store, mut pst) = start_store(&objstore, &tmp.path().join("cache"));
    let (n, _pn) = node(tmp.path(), "n", &["--external-label=replica=s"]);
    write(&n, &series, &hours(4, 6), 0, &[]);
    let (r, _pr) = node(tmp.path(), "r", &[]);
    write(&r, &series, &hours(0, 2), 0, &[]);
    write(&r, &series, &hours(4, 6), 0, &[]);

    let q = format!("127.0.0.1:{}", free_port());
    let mut pq = start_query(
        &q,
        &[
            format!("--endpoint={store}"),
            format!("--endpoint={n}"),
            "--query.replica-label=replica".into(),
        ],
    );
    wait_ready(&mut pq, &q, Duration::from_secs(30));
    let h = 3_600_000;
    let (start, end) = (T0 + 600_000, T0 + 6 * h - 1);
    let mut compared = 0;
    for query in QUERIES.iter().take(13) {
        for (from, to) in [(start, end), (T0 + 90 * 60_000, T0 + 5 * h)] {
            let path = format!(
                "/api/v1/query_range?query={}&start={}&end={}&step=60",
                encode(query),
                secs(from),
                secs(to)
            );
            assert_same(&data(&q, &path), &data(&r, &path), &path);
            compared += 1;
        }
    }
    let window = format!("start={}&end={}", secs(T0), secs(end));
    for path in [
        format!("/api/v1/series?match[]=demo_memory_usage_bytes&{window}"),
        format!("/api/v1/labels?{window}"),
        format!("/api/v1/label/instance/values?{window}"),
    ] {
        assert_same(&data(&q, &path), &data(&r, &path), &path);
        compared += 1;
    }
    eprintln!("{compared} calls: query role over store + node == single node R");

    // Skipped by time range: a read of the last hour skips the store, a
    // read of the first hour skips the node.
    let skipped = |e: &str| endpoint_metric(&q, "tidemark_query_endpoint_skipped_total", e);
    let (store_before, node_before) = (skipped(&store), skipped(&n));
    let last = format!(
        "/api/v1/query?query=demo_memory_usage_bytes&time={}",
        secs(end)
    );
    assert_eq!(data(&q, &last)["result"].as_array().map(Vec::len), Some(6));
    assert_eq!(skipped(&store), store_before + 1.0);
    assert_eq!(skipped(&n), node_before);
    let first = format!(
        "/api/v1/query?query=demo_memory_usage_bytes&time={}",
        secs(T0 + h)
    );
    assert_eq!(data(&q, &first)["result"].as_array().map(Vec::len), Some(6));
    assert_eq!(skipped(&n), node_before + 1.0);
    assert_eq!(skipped(&store), store_before + 1.0);

    pq.terminate(Duration::from_secs(30));
    pst.terminate(Duration::from_secs(30));
    drop(weed);
}

#[test]
fn query_role_sends_endpoint_credentials() {
    let tmp = tempfile::tempdir().unwrap();
    let web = tmp.path().join("web.yml");
    let hash = bcrypt::hash("s3cret", 4).unwrap();
    std::fs::write(&web, format!("basic_auth_users:\n  query: '{hash}'\n")).unwrap();
    let (n, _pn) = node(
        tmp.path(),
        "n",
        &[&format!("--web.config.file={}", web.display())],
    );
    // The node's API asks for credentials.
    let (status, _) = common::http::request(&n, "POST", "/api/v1/write", &[], b"").unwrap();
    assert_eq!(status, 401);
    let password = tmp.path().join("password");
    std::fs::write(&password, "s3cret\n").unwrap();
    let path = format!(
        "/api/v1/query?query={}&time={}",
        encode("vector(1) + count(up or vector(0))"),
        secs(T0)
    );
    let q = format!("127.0.0.1:{}", free_port());
    let mut pq = start_query(
        &q,
        &[
            format!("--endpoint={n}"),
            "--endpoint.basic-auth-username=query".into(),
            format!("--endpoint.basic-auth-password-file={}", password.display()),
        ],
    );
    wait_ready(&mut pq, &q, Duration::from_secs(30));
    assert_eq!(endpoint_metric(&q, "tidemark_query_endpoint_up", &n), 1.0);
    // No start/end: the endpoint's all-time defaults.
    assert!(data(&q, "/api/v1/labels").is_array());
    let (status, v) = call(&q, &path);
    assert_eq!(status, 200, "{v}");
    pq.terminate(Duration::from_secs(30));

    // Without credentials the endpoint refuses, and the answer says so.
    let q2 = format!("127.0.0.1:{}", free_port());
    let mut pq2 = start_query(&q2, &[format!("--endpoint={n}")]);
    wait_ready(&mut pq2, &q2, Duration::from_secs(30));
    assert_eq!(endpoint_metric(&q2, "tidemark_query_endpoint_up", &n), 0.0);
    let (status, v) = call(&q2, "/api/v1/labels");
    assert_eq!(status, 422, "{v}");
    assert!(v["error"].as_str().unwrap().contains("HTTP 401"), "{v}");
    pq2.terminate(Duration::from_secs(30));
}

/// Issue 20's end to end: an HA pair A/B (one sender writing the same
/// samples to both, as the scale-out overlay's senders do) and a shard C
/// ship their blocks to SeaweedFS and delete them locally (`--retention`);
/// `tidemark compact` merges each stream in the bucket; the query role
/// over A, B, C and a `tidemark store` answers the whole compat query set
/// (`compat_queries`, every variant; data `compat_ha_series` on A/B,
/// `compat_shard_series` on C) and the metadata calls exactly as one
/// node R that received all the data (status, `data` and PromQL warnings;
/// `should_fail` queries fail on both with the same status class), before
/// and after the merge, with a
/// replica killed (complete, warned), and a shard killed (503, or warnings
/// with `partial_response=true`). Prints the latency figures.
#[test]
fn ha_pair_and_shard_shipped_compacted_and_queried_through_store_answer_like_one_node() {
    use common::weed::{runtime, s3_store, s3_yaml, Weed};
    const HOURS: i64 = 10;
    let h = 3_600_000;
    let tmp = tempfile::tempdir().unwrap();
    let weed = Weed::start(&tmp.path().join("weed"));
    let bucket = s3_store(&weed.endpoint());
    let cfg = tmp.path().join("bucket.yml");
    std::fs::write(&cfg, s3_yaml(&weed.endpoint())).unwrap();
    let objstore = format!("--objstore.config.file={}", cfg.display());
    let shipping = |label: &'static str| -> Vec<String> {
        vec![
            objstore.clone(),
            format!("--external-label={label}"),
            // Blocks ending 3 h behind the newest sample go once shipped.
            "--retention=3h".into(),
            "--compaction-interval=200ms".into(),
            "--shipper.sync-interval=1s".into(),
            "--shipper.max-backoff=1s".into(),
        ]
    };
    let start = |name: &str, args: Vec<String>| {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        node(tmp.path(), name, &refs)
    };
    let (a, mut pa) = start("a", shipping("replica=a"));
    let (b, _pb) = start("b", shipping("replica=b"));
    let (c, mut pc) = start("c", shipping("shard=c"));
    let (r, _pr) = node(tmp.path(), "r", &[]);

    let all: Vec<i64> = (0..HOURS * 240).collect();
    let (ha, shard) = (compat_ha_series(), compat_shard_series());
    for n in [&a, &b] {
        write(n, &ha, &all, 0, &[]);
    }
    write(&c, &shard, &all, 0, &[]);
    // R's head moves forward with each write: both sets a step range at a
    // time.
    for ks in all.chunks(60) {
        write(&r, &ha, ks, 0, &[]);
        write(&r, &shard, ks, 0, &[("shard", "c")]);
    }

    let rt = runtime();
    let complete_blocks = || -> usize {
        rt.block_on(async {
            let l = bucket.list_with_delimiter(None).await.ok()?;
            let mut n = 0;
            for p in &l.common_prefixes {
                if bucket.head(&p.child("meta.json")).await.is_ok() {
                    n += 1;
                }
            }
            Some(n)
        })
        .unwrap_or(0)
    };
    // Four 2 h blocks per stream shipped (the head keeps the last 2 h);
    // the first three are deleted locally.
    wait_until("12 blocks shipped", Duration::from_secs(120), || {
        complete_blocks() == 12
    });
    let first_hour = format!(
        "/api/v1/query?query=count(demo_memory_usage_bytes)&time={}",
        secs(T0 + h)
    );
    for n in [&a, &b] {
        wait_until(
            &format!("{n}: first hours deleted locally"),
            Duration::from_secs(60),
            || {
                data(n, &first_hour)["result"]
                    .as_array()
                    .is_some_and(Vec::is_empty)
            },
        );
    }

    let (store, mut pst) = start_store(&objstore, &tmp.path().join("cache"));
    let q = format!("127.0.0.1:{}", free_port());
    let mut pq = start_query(
        &q,
        &[
            format!("--endpoint={a}"),
            format!("--endpoint={b}"),
            format!("--endpoint={c}"),
            format!("--endpoint={store}"),
            "--query.replica-label=replica".into(),
            "--endpoint.refresh-interval=500ms".into(),
            "--endpoint.timeout=10s".into(),
        ],
    );
    wait_ready(&mut pq, &q, Duration::from_secs(30));

    let end = T0 + HOURS * h - 1;
    let window = format!("start={}&end={}", secs(T0), secs(end));
    // The compat set, each query as a range query over the hour where the
    // store's blocks hand over to the nodes' (61 steps) and as instant
    // queries in the store's hours and at the end.
    let compat = compat_queries();
    let mut calls = Vec::new();
    let mut failing = Vec::new();
    let mut unchecked = Vec::new();
    for cq in &compat {
        let mut paths = vec![format!(
            "/api/v1/query_range?query={}&start={}&end={}&step=60",
            encode(&cq.query),
            secs(T0 + 5 * h + 30 * 60_000),
            secs(T0 + 6 * h + 30 * 60_000)
        )];
        for t in [T0 + 3 * h + 7_000, end] {
            paths.push(format!(
                "/api/v1/query?query={}&time={}",
                encode(&cq.query),
                secs(t)
            ));
        }
        match (cq.should_fail, cq.skip_comparison) {
            (true, _) => failing.extend(paths.into_iter().map(|p| (cq.query.clone(), p))),
            (false, true) => unchecked.extend(paths),
            (false, false) => calls.extend(paths),
        }
    }
    for m in [
        "demo_memory_usage_bytes",
        "{__name__=~\"demo_.+\"}",
        "{shard=\"c\"}",
    ] {
        calls.push(format!("/api/v1/series?match[]={}&{window}", encode(m)));
    }
    calls.push(format!("/api/v1/labels?{window}"));
    for name in ["instance", "__name__", "shard", "replica"] {
        calls.push(format!("/api/v1/label/{name}/values?{window}"));
    }
    let compare = |what: &str| {
        // PromQL's own warnings (a quantile outside [0, 1]...) are part of
        // the answer: compared too.
        // Answers with data: compared answers are not mostly empty ones.
        let mut with_data = 0;
        for path in &calls {
            let ((got, gv), (want, wv)) = (call(&q, path), call(&r, path));
            assert_eq!((got, want), (200, 200), "{path}: {gv} vs {wv}");
            assert_same(&gv["data"], &wv["data"], path);
            assert_eq!(gv.get("warnings"), wv.get("warnings"), "{path}");
            let result = &wv["data"]["result"];
            if !result.is_array() || result.as_array().is_some_and(|r| !r.is_empty()) {
                with_data += 1;
            }
        }
        assert!(
            with_data * 10 >= calls.len() * 7,
            "{with_data} of {} answers have data",
            calls.len()
        );
        for path in &unchecked {
            assert_eq!(call(&q, path).0, 200, "{q}{path}");
            assert_eq!(call(&r, path).0, 200, "{r}{path}");
        }
        // `should_fail`: an error on both, of the same status class.
        // Except where this engine accepts the query (see `ACCEPTED`):
        // then the same answer.
        let mut accepted = std::collections::BTreeSet::new();
        for (query, path) in &failing {
            let ((got, gv), (want, wv)) = (call(&q, path), call(&r, path));
            if want == 200 && ACCEPTED.contains(&query.as_str()) {
                accepted.insert(query.as_str());
                assert_eq!(got, 200, "{path}: {gv} vs {wv}");
                assert_same(&gv["data"], &wv["data"], path);
                continue;
            }
            assert_eq!(wv["status"], "error", "{r}{path}: {wv}");
            assert_eq!(gv["status"], "error", "{q}{path}: {gv}");
            assert_eq!(got / 100, want / 100, "{path}: {gv} vs {wv}");
        }
        assert_eq!(accepted.len(), ACCEPTED.len(), "{accepted:?}");
        eprintln!(
            "{} queries of the compat set: {} calls compared ({with_data} with data), \
             {} should_fail calls ({} of them accepted alike), {} answered unchecked, \
             {what}: query role over A, B, C + store == one node R",
            compat.len(),
            calls.len(),
            failing.len(),
            accepted.len() * 3,
            unchecked.len()
        );
    };
    compare("level-1 blocks in the bucket");
    // The store answered the first hours: the nodes no longer hold them.
    assert!(endpoint_metric(&q, "tidemark_query_endpoint_requests_total", &store) > 0.0);

    // Figure: latency through the query role (4 endpoints, the store's
    // caches warm) vs on R, median of 11.
    latency_figures(
        &r,
        &q,
        (T0, end, 60),
        11,
        &format!("query_range {HOURS}h/60s, 2 replicas + shard + store:"),
    );

    // The compactor merges each stream's first three 2 h blocks into one
    // 6 h block (the newest is left for later); the store switches to them
    // within its sync interval.
    let out = Command::new(tidemark_bin())
        .args([
            "compact",
            &objstore,
            "--consistency-delay=0s",
            "--delete-delay=0s",
        ])
        .arg(format!(
            "--data-dir={}",
            tmp.path().join("compact").display()
        ))
        .arg(format!("--listen=127.0.0.1:{}", free_port()))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let merged_blocks = || -> usize {
        rt.block_on(async {
            let l = bucket.list_with_delimiter(None).await.ok()?;
            let mut n = 0;
            for p in &l.common_prefixes {
                let Ok(m) = bucket.get(&p.child("meta.json")).await else {
                    continue;
                };
                let m: serde_json::Value = serde_json::from_slice(&m.bytes().await.ok()?).ok()?;
                if m["compaction"]["level"].as_u64() > Some(1) {
                    n += 1;
                }
            }
            Some(n)
        })
        .unwrap_or(0)
    };
    assert_eq!(merged_blocks(), 3, "one merged block per stream");
    // Sources are dropped as soon as their merged block is complete.
    wait_until(
        "the store serves 3 merged + 3 newest blocks",
        Duration::from_secs(30),
        || metric(&store, "tidemark_store_blocks_loaded") == Some(6.0),
    );
    compare("merged blocks in the bucket");

    // One replica killed: complete answers, a warning naming it.
    pa.terminate(Duration::from_secs(30));
    for path in calls
        .iter()
        .filter(|p| p.contains("query_range") && p.contains("demo_memory_usage_bytes"))
        .take(6)
    {
        let (status, got) = call(&q, path);
        assert_eq!(status, 200, "{got}");
        assert_same(&got["data"], &data(&r, path), path);
        assert!(got["warnings"].to_string().contains(&a), "{got}");
    }
    // The shard killed: the query fails, or warns when partial responses
    // are allowed.
    pc.terminate(Duration::from_secs(30));
    let path = calls
        .iter()
        .find(|p| p.contains("query_range") && p.contains("demo_api_request_duration_seconds"))
        .expect("a range query over the shard's histogram");
    let (status, v) = call(&q, path);
    assert_eq!(status, 503, "{v}");
    let (status, v) = call(&q, &format!("{path}&partial_response=true"));
    assert_eq!(status, 200, "{v}");
    assert!(v["warnings"].to_string().contains(&c), "{v}");
    pq.terminate(Duration::from_secs(30));
    pst.terminate(Duration::from_secs(30));
    drop(weed);
}
