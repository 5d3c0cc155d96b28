//! The query set: panels of Grafana's "Node Exporter Full" dashboard
//! (rates, sums by instance, topk, regex matchers, ratios between metrics,
//! `histogram_quantile` over classic buckets) as range queries at 15 s and
//! 60 s steps and as instant queries, plus the series, labels and label
//! values calls Grafana makes; and the comparison of two answers
//! (floats equal within 1e-9 relative, series matched by labels).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::http::{encode_component, Client};
use crate::workload::{instance_name, Spec};

/// Relative tolerance of float comparisons.
pub const REL_TOLERANCE: f64 = 1e-9;

/// One dashboard expression.
struct Panel {
    name: &'static str,
    expr: String,
}

fn panels() -> Vec<Panel> {
    let i0 = instance_name(0);
    let p = |name, expr: &str| Panel {
        name,
        expr: expr.to_string(),
    };
    vec![
        p(
            "cpu busy %",
            r#"100 * (1 - avg by (instance) (rate(node_cpu_seconds_total{mode="idle"}[5m])))"#,
        ),
        p(
            "cpu by mode",
            r#"sum by (instance, mode) (rate(node_cpu_seconds_total{mode!="idle"}[5m]))"#,
        ),
        p(
            "load1 regex",
            r#"node_load1{job="node",instance=~"node-00[0-3].*"}"#,
        ),
        p(
            "memory used %",
            r#"100 * (1 - node_memory_MemAvailable_bytes{job="node"} / node_memory_MemTotal_bytes{job="node"})"#,
        ),
        p(
            "net rx topk",
            r#"topk(5, sum by (instance) (rate(node_network_receive_bytes_total{device!~"lo|veth.*"}[5m])))"#,
        ),
        p(
            "disk read B/s",
            r#"sum by (instance) (rate(node_disk_read_bytes_total{device=~"(vd|sd|nvme)[a-z0-9]+"}[5m]))"#,
        ),
        Panel {
            name: "disk io util",
            expr: format!(r#"rate(node_disk_io_time_seconds_total{{instance="{i0}"}}[5m])"#),
        },
        p(
            "fs used %",
            r#"100 - (node_filesystem_avail_bytes{fstype!~"tmpfs|vfat"} * 100 / node_filesystem_size_bytes{fstype!~"tmpfs|vfat"})"#,
        ),
        p(
            "net tx irate",
            r#"irate(node_network_transmit_packets_total{instance=~"node-00.*"}[5m])"#,
        ),
        p(
            "handler p90",
            r#"histogram_quantile(0.9, sum by (le, instance) (rate(promhttp_metric_handler_request_duration_seconds_bucket[5m])))"#,
        ),
        p(
            "context switches",
            r#"sum(rate(node_context_switches_total[5m]))"#,
        ),
        p(
            "cpu count",
            r#"count by (instance) (node_cpu_seconds_total{mode="idle"})"#,
        ),
        p("uptime", r#"node_time_seconds - node_boot_time_seconds"#),
        p("load5 avg 10m", r#"avg_over_time(node_load5[10m])"#),
        p("major faults", r#"rate(node_vmstat_pgmajfault[5m])"#),
    ]
}

/// One timed request.
#[derive(Debug, Clone)]
pub struct Query {
    /// Row label, e.g. `cpu busy % (range 15s)`.
    pub name: String,
    /// Path and query string.
    pub path: String,
}

/// Seconds with ms precision, as Grafana sends them.
fn secs(ms: i64) -> String {
    format!("{}.{:03}", ms.div_euclid(1000), ms.rem_euclid(1000))
}

/// Every request of the comparison for the workload of `spec`.
pub fn query_set(spec: &Spec) -> Vec<Query> {
    let (start, end) = (spec.start_ms(), spec.end_ms);
    let history = end - start;
    let mut out = Vec::new();
    let at = end.div_euclid(1000) * 1000;
    // Grafana aligns start and end down to the step; the first 10
    // minutes (or half the history) are left out so `[5m]` windows are full.
    let range = |step_s: i64| {
        let step = step_s * 1000;
        let s = (start + (10 * 60_000).min(history / 2)).div_euclid(step) * step;
        let e = end.div_euclid(step) * step;
        format!(
            "/api/v1/query_range?start={}&end={}&step={step_s}&query=",
            secs(s),
            secs(e)
        )
    };
    for (label, prefix) in [
        ("range 15s", range(15)),
        ("range 60s", range(60)),
        ("instant", format!("/api/v1/query?time={}&query=", secs(at))),
    ] {
        for p in panels() {
            out.push(Query {
                name: format!("{} ({label})", p.name),
                path: format!("{prefix}{}", encode_component(&p.expr)),
            });
        }
    }
    let window = format!("start={}&end={}", secs(start), secs(end));
    let i0 = instance_name(0);
    for (name, path) in [
        (
            "series: one instance's idle CPUs",
            format!(
                "/api/v1/series?match[]={}&{window}",
                encode_component(&format!(
                    r#"node_cpu_seconds_total{{instance="{i0}",mode="idle"}}"#
                ))
            ),
        ),
        (
            "series: all network receive",
            format!("/api/v1/series?match[]=node_network_receive_bytes_total&{window}"),
        ),
        ("labels", format!("/api/v1/labels?{window}")),
        (
            "label values: __name__",
            format!("/api/v1/label/__name__/values?{window}"),
        ),
        (
            "label values: instance of node_uname_info",
            format!("/api/v1/label/instance/values?match[]=node_uname_info&{window}"),
        ),
        (
            "label values: device of disks",
            format!("/api/v1/label/device/values?match[]=node_disk_read_bytes_total&{window}"),
        ),
    ] {
        out.push(Query {
            name: name.to_string(),
            path,
        });
    }
    out
}

/// Latencies of `runs` timed requests (after one untimed warm-up) and the
/// body of the warm-up answer.
#[derive(Debug, Clone)]
pub struct Timing {
    /// Sorted latencies.
    pub latencies: Vec<Duration>,
    /// The answer's body.
    pub body: Vec<u8>,
}

/// Runs `q` once to warm up, then `runs` times timed.
///
/// # Errors
/// A message when a request fails or answers other than 200.
pub fn time_query(client: &mut Client, q: &Query, runs: usize) -> Result<Timing, String> {
    let mut body = Vec::new();
    let mut latencies = Vec::with_capacity(runs);
    for run in 0..=runs {
        let t0 = Instant::now();
        let r = client.get(&q.path).map_err(|e| e.to_string())?;
        let took = t0.elapsed();
        if r.status != 200 {
            return Err(format!(
                "status {}: {}",
                r.status,
                r.text().chars().take(200).collect::<String>()
            ));
        }
        if run == 0 {
            body = r.body;
        } else {
            latencies.push(took);
        }
    }
    latencies.sort_unstable();
    Ok(Timing { latencies, body })
}

/// Floats equal within [`REL_TOLERANCE`] (NaN equals NaN, infinities by sign).
fn close(a: f64, b: f64) -> bool {
    if a.is_nan() || b.is_nan() {
        return a.is_nan() && b.is_nan();
    }
    a == b || (a - b).abs() <= REL_TOLERANCE * a.abs().max(b.abs())
}

fn number(v: &Value) -> Option<f64> {
    match v {
        Value::String(s) => match s.as_str() {
            "+Inf" | "Inf" => Some(f64::INFINITY),
            "-Inf" => Some(f64::NEG_INFINITY),
            "NaN" => Some(f64::NAN),
            s => s.parse().ok(),
        },
        Value::Number(n) => n.as_f64(),
        _ => None,
    }
}

/// `[ts, "v"]` pairs.
fn points(v: &Value) -> Vec<(f64, f64)> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| Some((number(p.get(0)?)?, number(p.get(1)?)?)))
        .collect()
}

/// A query answer as series keyed by their labels' JSON.
fn by_series(data: &Value) -> BTreeMap<String, Vec<(f64, f64)>> {
    let mut out = BTreeMap::new();
    for s in data["result"].as_array().into_iter().flatten() {
        let key = s["metric"].to_string();
        let pts = if s.get("values").is_some() {
            points(&s["values"])
        } else {
            points(&Value::Array(vec![s["value"].clone()]))
        };
        out.insert(key, pts);
    }
    out
}

/// Whether two API answers carry the same result. Series and label
/// lists compare as sets; samples by timestamp and value within
/// [`REL_TOLERANCE`].
///
/// # Errors
/// The first difference, for the report.
pub fn same_result(want: &[u8], got: &[u8]) -> Result<(), String> {
    let parse = |b: &[u8]| serde_json::from_slice::<Value>(b).map_err(|e| format!("not JSON: {e}"));
    let (w, g) = (parse(want)?, parse(got)?);
    let (wd, gd) = (&w["data"], &g["data"]);
    if let (Some(wa), Some(ga)) = (wd.as_array(), gd.as_array()) {
        // series, labels, label values: order-insensitive.
        let set = |a: &Vec<Value>| {
            a.iter()
                .map(Value::to_string)
                .collect::<std::collections::BTreeSet<_>>()
        };
        let (ws, gs) = (set(wa), set(ga));
        return match ws.symmetric_difference(&gs).next() {
            None => Ok(()),
            Some(d) => Err(format!(
                "{} vs {} entries; e.g. {d} in one only",
                ws.len(),
                gs.len()
            )),
        };
    }
    if wd["resultType"] != gd["resultType"] {
        return Err(format!(
            "resultType {} vs {}",
            wd["resultType"], gd["resultType"]
        ));
    }
    if wd["resultType"] == "scalar" {
        let (a, b) = (
            points(&Value::Array(vec![wd["result"].clone()])),
            points(&Value::Array(vec![gd["result"].clone()])),
        );
        return match (a.first(), b.first()) {
            (Some(a), Some(b)) if a.0 == b.0 && close(a.1, b.1) => Ok(()),
            _ => Err(format!("scalar {a:?} vs {b:?}")),
        };
    }
    let (ws, gs) = (by_series(wd), by_series(gd));
    if ws.len() != gs.len() {
        return Err(format!("{} series vs {}", ws.len(), gs.len()));
    }
    for (k, wp) in &ws {
        let gp = gs.get(k).ok_or_else(|| format!("series {k} missing"))?;
        if wp.len() != gp.len() {
            return Err(format!("series {k}: {} points vs {}", wp.len(), gp.len()));
        }
        for (a, b) in wp.iter().zip(gp) {
            if a.0 != b.0 || !close(a.1, b.1) {
                return Err(format!(
                    "series {k}: ({}, {}) vs ({}, {})",
                    a.0, a.1, b.0, b.1
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_result_tolerates_tiny_float_noise() {
        let a = br#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"a":"1"},"values":[[1,"1.0000000000001"],[2,"NaN"]]}]}}"#;
        let b = br#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"a":"1"},"values":[[1,"1"],[2,"NaN"]]}]}}"#;
        same_result(a, b).unwrap();
        let c = br#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"a":"1"},"values":[[1,"1.001"],[2,"NaN"]]}]}}"#;
        assert!(same_result(a, c).is_err());
    }

    #[test]
    fn same_result_lists_are_sets() {
        same_result(br#"{"data":["a","b"]}"#, br#"{"data":["b","a"]}"#).unwrap();
        assert!(same_result(br#"{"data":["a","b"]}"#, br#"{"data":["a"]}"#).is_err());
    }

    #[test]
    fn query_set_has_enough_dashboard_queries() {
        let spec = Spec {
            targets: 1,
            series_per_target: 1,
            scrapes: 10,
            interval_ms: 15_000,
            jitter_ms: 0,
            end_ms: 1_700_000_000_000,
            shards: 1,
            max_samples_per_send: 2000,
            seed: 1,
        };
        let qs = query_set(&spec);
        assert!(panels().len() >= 12);
        assert_eq!(qs.len(), panels().len() * 3 + 6);
        assert!(qs.iter().any(|q| q.path.contains("histogram_quantile")));
    }
}
