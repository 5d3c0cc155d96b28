//! Every panel query of every dashboard in `grafana/dashboards/` runs on
//! real data: Debian's Prometheus scrapes Debian's node_exporter and
//! Tidemark's own `/metrics` every second and remote-writes both into the
//! `tidemark` binary (all on 127.0.0.1). Template variables are resolved as
//! Grafana resolves them (`label_values(…)` through the label values API)
//! and substituted with the first real value; Grafana's built-in interval
//! variables get the values Grafana would pick for a 1 s scrape interval.
//! Each query must parse, execute and return data, as Grafana runs it
//! (`query_range`, or `query` for instant targets).
//!
//! Needs `prometheus` and `prometheus-node-exporter`; `TIDEMARK_SKIP_E2E=1`
//! skips without them.

mod common;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::http;
use common::proc::{find_bin, free_port, start_prometheus_with, wait_until, Proc};
use serde_json::Value;

/// Grafana's built-in variables, longest name first so `$__interval` does
/// not eat `$__interval_ms`. `$__rate_interval` is max(4 x scrape
/// interval, interval + scrape interval): with 1 s scrapes, a 15 s floor.
const BUILTINS: [(&str, &str); 5] = [
    ("$__rate_interval", "15s"),
    ("$__interval_ms", "5000"),
    ("$__interval", "5s"),
    ("$__range", "1m"),
    ("${__range}", "1m"),
];

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

fn api(addr: &str, path: &str) -> Value {
    let (status, body) = http::get(addr, path).unwrap_or_else(|| panic!("{path}: no answer"));
    let v: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"));
    assert_eq!(status, 200, "{path}: {body}");
    v
}

/// Substitutes `$name` / `${name}` for each resolved variable.
fn substitute(expr: &str, vars: &[(String, String)]) -> String {
    let mut out = expr.to_string();
    for (name, value) in vars {
        out = out
            .replace(&format!("${{{name}}}"), value)
            .replace(&format!("${name}"), value);
    }
    for (name, value) in BUILTINS {
        out = out.replace(name, value);
    }
    out
}

/// Resolves a dashboard's template variables in order, each with the first
/// value Tidemark returns for its `label_values(<selector>, <label>)`.
fn resolve_variables(addr: &str, dash: &Value, file: &str) -> Vec<(String, String)> {
    let mut vars: Vec<(String, String)> = Vec::new();
    for v in dash["templating"]["list"].as_array().unwrap() {
        let name = v["name"].as_str().unwrap().to_string();
        match v["type"].as_str().unwrap() {
            "datasource" => vars.push((name, "tidemark".to_string())),
            "query" => {
                let q = v["query"]["query"]
                    .as_str()
                    .or(v["query"].as_str())
                    .or(v["definition"].as_str())
                    .unwrap();
                let q = substitute(q, &vars);
                let inner = q
                    .strip_prefix("label_values(")
                    .and_then(|s| s.strip_suffix(')'))
                    .unwrap_or_else(|| {
                        panic!("{file}: ${name}: only label_values() is supported: {q}")
                    });
                let (selector, label) = inner.rsplit_once(',').unwrap();
                let path = format!(
                    "/api/v1/label/{}/values?match[]={}&start={}&end={}",
                    label.trim(),
                    http::encode(selector.trim()),
                    now() - 3600.0,
                    now()
                );
                let values = api(addr, &path);
                let first = values["data"][0]
                    .as_str()
                    .unwrap_or_else(|| panic!("{file}: ${name} has no values: {path} {values}"))
                    .to_string();
                vars.push((name, first));
            }
            other => panic!("{file}: variable type {other} not handled"),
        }
    }
    vars
}

/// Every target of every panel (panels inside collapsed rows included).
fn targets(dash: &Value) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    let mut stack: Vec<&Value> = dash["panels"].as_array().unwrap().iter().collect();
    while let Some(p) = stack.pop() {
        if let Some(inner) = p["panels"].as_array() {
            stack.extend(inner);
        }
        for t in p["targets"].as_array().into_iter().flatten() {
            out.push((p["title"].as_str().unwrap_or("").to_string(), t.clone()));
        }
    }
    out
}

#[test]
fn every_dashboard_query_returns_data_from_tidemark() {
    let (Some(prometheus), Some(node_exporter)) =
        (find_bin("prometheus"), find_bin("prometheus-node-exporter"))
    else {
        if std::env::var("TIDEMARK_SKIP_E2E").as_deref() == Ok("1") {
            eprintln!("skipping: prometheus / node_exporter not installed");
            return;
        }
        panic!("prometheus and prometheus-node-exporter must be installed (scripts/test does it)");
    };
    let dir = tempfile::tempdir().unwrap();
    let (tm, prom, node) = (
        format!("127.0.0.1:{}", free_port()),
        format!("127.0.0.1:{}", free_port()),
        format!("127.0.0.1:{}", free_port()),
    );
    // A rule group with an alert that fires, sent to an Alertmanager that
    // is not there, for the "Rules and alerts" row.
    let rules = dir.path().join("rules.yml");
    std::fs::write(
        &rules,
        "groups:\n  - name: dash\n    interval: 1s\n    rules:\n      - record: dash:up:count\n        expr: count(up)\n      - alert: Always\n        expr: vector(1)\n",
    )
    .unwrap();
    let nowhere = format!("http://127.0.0.1:{}", free_port());
    let mut tidemark = common::proc::start_tidemark_with(
        &tm,
        &dir.path().join("tidemark"),
        &[
            "--rule-files",
            rules.to_str().unwrap(),
            "--alertmanager.url",
            &nowhere,
        ],
    );
    let _node = Proc(
        Command::new(&node_exporter)
            .arg(format!("--web.listen-address={node}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
        "node_exporter",
    );
    common::proc::wait_ready(&mut tidemark, &tm, Duration::from_secs(30));
    wait_until("node_exporter up", Duration::from_secs(30), || {
        http::get(&node, "/metrics").is_some_and(|r| r.0 == 200)
    });
    let config = format!(
        "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: node\n    static_configs:\n      - targets: ['{node}']\n  - job_name: tidemark\n    static_configs:\n      - targets: ['{tm}']\nremote_write:\n  - url: http://{tm}/api/v1/write\n    queue_config:\n      batch_send_deadline: 1s\n"
    );
    let _prom = start_prometheus_with(&prometheus, &prom, dir.path(), &config, &[]);
    wait_until("prometheus ready", Duration::from_secs(60), || {
        http::get(&prom, "/-/ready").is_some_and(|r| r.0 == 200)
    });

    // Some query traffic for the query panels to show, while ~20 s of
    // scrapes accumulate (rate() over 15 s needs a few samples).
    let start = now();
    wait_until(
        "20 s of node and tidemark samples in Tidemark",
        Duration::from_secs(90),
        || {
            let _ = http::get(&tm, "/api/v1/query?query=up");
            let _ = http::get(
                &tm,
                &format!(
                    "/api/v1/query_range?query=up&start={}&end={}&step=1",
                    now() - 60.0,
                    now()
                ),
            );
            let _ = http::get(&tm, "/api/v1/labels");
            let _ = http::get(&tm, "/api/v1/series?match[]=up");
            std::thread::sleep(Duration::from_millis(500));
            let q = "min(count_over_time({__name__=~\"node_load1|tidemark_head_series\"}[1m]))";
            let v = api(&tm, &format!("/api/v1/query?query={}", http::encode(q)));
            now() - start > 20.0
                && v["data"]["result"][0]["value"][1]
                    .as_str()
                    .and_then(|s| s.parse::<f64>().ok())
                    .is_some_and(|n| n >= 15.0)
        },
    );

    let dashboards = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("grafana/dashboards");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dashboards)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    assert!(files.len() >= 2, "two dashboards at least: {files:?}");
    let (mut failures, mut ran) = (Vec::new(), 0);
    for f in &files {
        let file = f.file_name().unwrap().to_string_lossy().into_owned();
        let dash: Value = serde_json::from_str(&std::fs::read_to_string(f).unwrap())
            .unwrap_or_else(|e| panic!("{file}: not JSON: {e}"));
        assert!(
            dash["uid"].as_str().is_some_and(|u| !u.is_empty()),
            "{file}: uid"
        );
        // Grafana keys panels by id: a repeated id hides one of them.
        let mut ids: Vec<u64> = dash["panels"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|p| p["id"].as_u64())
            .collect();
        let n = ids.len();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), n, "{file}: repeated panel ids");
        let vars = resolve_variables(&tm, &dash, &file);
        eprintln!("{file}: variables {vars:?}");
        let end = now();
        for (title, t) in targets(&dash) {
            let raw = t["expr"]
                .as_str()
                .unwrap_or_else(|| panic!("{file}/{title}: no expr"));
            assert_eq!(t["datasource"]["uid"], "${datasource}", "{file}/{title}");
            let expr = substitute(raw, &vars);
            assert!(
                !expr.contains('$'),
                "{file}/{title}: unresolved variable in {expr}"
            );
            let path = if t["instant"] == true {
                format!("/api/v1/query?query={}&time={end}", http::encode(&expr))
            } else {
                format!(
                    "/api/v1/query_range?query={}&start={}&end={end}&step=5",
                    http::encode(&expr),
                    end - 300.0
                )
            };
            ran += 1;
            let (status, body) = http::get(&tm, &path).unwrap();
            let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
            let non_empty = v["data"]["result"].as_array().is_some_and(|r| {
                r.iter().any(|s| {
                    s["values"].as_array().is_some_and(|v| !v.is_empty()) || s["value"].is_array()
                })
            });
            if status != 200 || v["status"] != "success" || !non_empty {
                failures.push(format!(
                    "{file}/{title}: {expr}\n    -> {status} {body:.300}"
                ));
            }
        }
    }
    eprintln!("{ran} dashboard queries ran");
    assert!(
        failures.is_empty(),
        "{} of {ran} dashboard queries failed or returned no data:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
