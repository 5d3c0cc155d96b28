//! Recording and alerting rules end to end: rule files that Debian's
//! promtool and Tidemark agree on, an alert that fires in a real
//! Alertmanager (Debian's `prometheus-alertmanager`) with its labels and
//! annotations, keeps its `for` state across a Tidemark restart and
//! resolves; `/api/v1/rules`, reload (HTTP and SIGHUP) and a bad rule file
//! refused at start.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::http;
use common::proc::{find_bin, free_port, start_tidemark_with, wait_ready, wait_until, Proc};
use serde_json::Value;

fn testdata(dir: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/testdata/rules")
        .join(dir);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no fixtures in {}", dir.display());
    files
}

fn promtool_accepts(file: &Path) -> bool {
    let promtool =
        find_bin("promtool").expect("promtool (Debian's prometheus package) not installed");
    Command::new(promtool)
        .args(["check", "rules"])
        .arg(file)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .success()
}

#[test]
fn promtool_and_tidemark_agree_on_the_rule_fixtures() {
    for f in testdata("valid") {
        tidemark::rules::file::load_file(&f, 60_000)
            .unwrap_or_else(|e| panic!("tidemark refuses {}: {e}", f.display()));
        assert!(promtool_accepts(&f), "promtool refuses {}", f.display());
    }
    for f in testdata("invalid") {
        let e = tidemark::rules::file::load_file(&f, 60_000)
            .err()
            .unwrap_or_else(|| panic!("tidemark accepts {}", f.display()));
        assert!(e.to_string().starts_with(&f.display().to_string()), "{e}");
        assert!(!promtool_accepts(&f), "promtool accepts {}", f.display());
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn json(addr: &str, path: &str) -> Value {
    let (status, body) = http::get(addr, path).unwrap_or_else(|| panic!("{path}: unreachable"));
    assert_eq!(status, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap()
}

/// Starts Debian's Alertmanager on a free port with one receiver that
/// sends nowhere; alerts are read back through its API.
fn start_alertmanager(dir: &Path) -> (Proc, String) {
    let bin = find_bin("prometheus-alertmanager")
        .expect("prometheus-alertmanager (Debian package) not installed; scripts/test installs it");
    let addr = format!("127.0.0.1:{}", free_port());
    let config = dir.join("alertmanager.yml");
    std::fs::write(
        &config,
        "route:\n  receiver: blackhole\n  group_wait: 1s\n  group_interval: 1s\nreceivers:\n  - name: blackhole\n",
    )
    .unwrap();
    let child = Command::new(bin)
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.path={}", dir.join("am").display()))
        .arg(format!("--web.listen-address={addr}"))
        .arg("--cluster.listen-address=")
        .arg("--log.level=warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut p = Proc(child, "alertmanager");
    wait_ready(&mut p, &addr, Duration::from_secs(30));
    (p, addr)
}

/// Alertmanager's active alerts named `name`.
fn am_alerts(am: &str, name: &str) -> Vec<Value> {
    let Value::Array(all) = json(am, "/api/v2/alerts") else {
        panic!("alert list is not an array");
    };
    all.into_iter()
        .filter(|a| a["labels"]["alertname"] == name && a["status"]["state"] == "active")
        .collect()
}

const RULES: &str = "groups:
  - name: rooms
    interval: 1s
    rules:
      - record: room:temperature:max
        expr: max by (room) (temperature)
      - alert: HighTemperature
        expr: temperature > 30
        for: 2s
        labels:
          severity: page
        annotations:
          summary: '{{ $labels.room }} is at {{ $value }} degrees in {{ $externalLabels.cluster }}'
";

fn start(addr: &str, data: &Path, rules: &Path, am: &str) -> Proc {
    let mut p = start_tidemark_with(
        addr,
        data,
        &[
            "--rule-files",
            rules.to_str().unwrap(),
            "--rules.evaluation-interval",
            "1s",
            "--alertmanager.url",
            &format!("http://{am}"),
            "--external-label",
            "cluster=test",
            // `for` shorter than the grace period starts over after a
            // restart (Prometheus's rule); 1s lets a 2s `for` be restored.
            "--rules.alert.for-grace-period",
            "1s",
        ],
    );
    wait_ready(&mut p, addr, Duration::from_secs(60));
    p
}

fn firing_active_at(addr: &str) -> Option<String> {
    let alerts = json(addr, "/api/v1/alerts");
    alerts["data"]["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["labels"]["alertname"] == "HighTemperature" && a["state"] == "firing")
        .map(|a| a["activeAt"].as_str().unwrap().to_string())
}

#[test]
fn alert_fires_in_alertmanager_survives_a_restart_and_resolves() {
    let tmp = tempfile::tempdir().unwrap();
    let (_am_proc, am) = start_alertmanager(tmp.path());
    let rules = tmp.path().join("rules.yml");
    std::fs::write(&rules, RULES).unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let data = tmp.path().join("data");
    let mut p = start(&addr, &data, &rules, &am);
    let kitchen: &[(&str, &str)] = &[("__name__", "temperature"), ("room", "kitchen")];
    let hall: &[(&str, &str)] = &[("__name__", "temperature"), ("room", "hall")];
    http::remote_write_v1(&addr, &[(kitchen, now_ms(), 35.0), (hall, now_ms(), 20.0)]);

    // It reaches Alertmanager with its labels, external labels and annotations.
    let mut sent = Vec::new();
    wait_until("the alert in Alertmanager", Duration::from_secs(60), || {
        sent = am_alerts(&am, "HighTemperature");
        !sent.is_empty()
    });
    assert_eq!(sent.len(), 1, "{sent:?}");
    let a = &sent[0];
    assert_eq!(a["labels"]["room"], "kitchen");
    assert_eq!(a["labels"]["severity"], "page");
    assert_eq!(a["labels"]["cluster"], "test");
    assert_eq!(
        a["annotations"]["summary"],
        "kitchen is at 35 degrees in test"
    );

    // The recording rule's output is queryable.
    let q = json(&addr, "/api/v1/query?query=room:temperature:max");
    assert_eq!(q["data"]["result"].as_array().unwrap().len(), 2, "{q}");

    // The rules API shows the group, its rules' health and the alert.
    let r = json(&addr, "/api/v1/rules");
    let g = &r["data"]["groups"][0];
    assert_eq!(g["name"], "rooms");
    assert_eq!(g["interval"], 1.0);
    assert_eq!(g["rules"][0]["type"], "recording");
    assert_eq!(g["rules"][0]["health"], "ok");
    assert_eq!(g["rules"][1]["type"], "alerting");
    assert_eq!(g["rules"][1]["state"], "firing");
    assert_eq!(g["rules"][1]["duration"], 2.0);
    assert_eq!(g["rules"][1]["alerts"][0]["labels"]["room"], "kitchen");
    let only_records = json(&addr, "/api/v1/rules?type=record");
    assert_eq!(
        only_records["data"]["groups"][0]["rules"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let (status, _) = http::get(&addr, "/api/v1/rules?type=bogus").unwrap();
    assert_eq!(status, 400);

    // A restart keeps the alert's `for` state: same activeAt, firing again.
    let active_at = firing_active_at(&addr).expect("firing before the restart");
    p.terminate(Duration::from_secs(30));
    let mut p = start(&addr, &data, &rules, &am);
    http::remote_write_v1(&addr, &[(kitchen, now_ms(), 36.0)]);
    let mut after = None;
    wait_until(
        "the alert firing after the restart",
        Duration::from_secs(60),
        || {
            after = firing_active_at(&addr);
            after.is_some()
        },
    );
    // ALERTS_FOR_STATE holds whole seconds, as in Prometheus.
    let seconds = |t: &str| t.split(['.', 'Z']).next().unwrap().to_string();
    assert_eq!(
        seconds(&after.unwrap()),
        seconds(&active_at),
        "activeAt restored from ALERTS_FOR_STATE"
    );

    // The condition clears: the alert resolves in Alertmanager.
    http::remote_write_v1(&addr, &[(kitchen, now_ms(), 21.0)]);
    wait_until(
        "the alert resolved in Alertmanager",
        Duration::from_secs(60),
        || am_alerts(&am, "HighTemperature").is_empty(),
    );
    assert!(firing_active_at(&addr).is_none());
    let (_, metrics) = http::get(&addr, "/metrics").unwrap();
    let line = format!("prometheus_notifications_sent_total{{alertmanager=\"http://{am}\"}} ");
    let sent: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix(&line))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {line}in\n{metrics}"));
    assert!(sent >= 1.0, "notifications sent: {sent}");
    assert!(
        metrics.contains("prometheus_rule_evaluations_total{rule_group="),
        "{metrics}"
    );
    p.assert_alive(&addr);
}

#[test]
fn reload_keeps_the_rules_in_force_on_error_and_bad_files_are_refused_at_start() {
    let tmp = tempfile::tempdir().unwrap();
    let rules = tmp.path().join("rules.yml");
    std::fs::write(
        &rules,
        "groups:\n  - name: a\n    interval: 1s\n    rules:\n      - record: one\n        expr: vector(1)\n",
    )
    .unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let mut p = start_tidemark_with(
        &addr,
        &tmp.path().join("data"),
        &["--rule-files", &format!("{}/*.yml", tmp.path().display())],
    );
    wait_ready(&mut p, &addr, Duration::from_secs(60));
    let names = |addr: &str| -> Vec<String> {
        let r = json(addr, "/api/v1/rules");
        r["data"]["groups"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|g| g["rules"].as_array().unwrap().clone())
            .map(|r| r["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(names(&addr), ["one"]);

    // A broken file: 500 naming file, group and rule; the old rules stay.
    std::fs::write(
        &rules,
        "groups:\n  - name: a\n    rules:\n      - record: two\n        expr: sum(\n",
    )
    .unwrap();
    let (status, body) = http::request(&addr, "POST", "/-/reload", &[], b"").unwrap();
    let body = String::from_utf8_lossy(&body);
    assert_eq!(status, 500, "{body}");
    assert!(
        body.contains("rules.yml")
            && body.contains("group \"a\"")
            && body.contains("rule 1 (\"two\")"),
        "{body}"
    );
    assert_eq!(names(&addr), ["one"]);

    // Fixed: HTTP reload picks it up; SIGHUP too.
    std::fs::write(
        &rules,
        "groups:\n  - name: a\n    rules:\n      - record: two\n        expr: vector(2)\n",
    )
    .unwrap();
    let (status, _) = http::request(&addr, "POST", "/-/reload", &[], b"").unwrap();
    assert_eq!(status, 200);
    assert_eq!(names(&addr), ["two"]);
    std::fs::write(
        tmp.path().join("more.yml"),
        "groups:\n  - name: b\n    rules:\n      - record: three\n        expr: vector(3)\n",
    )
    .unwrap();
    let pid = p.0.id().to_string();
    assert!(Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap()
        .success());
    wait_until("SIGHUP reload", Duration::from_secs(20), || {
        names(&addr).len() == 2
    });
    // A changed file is picked up without a signal (a ConfigMap updated
    // in place).
    std::fs::write(
        tmp.path().join("more.yml"),
        "groups:\n  - name: b\n    rules:\n      - record: four\n        expr: vector(4)\n",
    )
    .unwrap();
    wait_until("reload on change", Duration::from_secs(20), || {
        names(&addr) == ["four", "two"]
    });
    p.assert_alive(&addr);
    p.terminate(Duration::from_secs(30));

    // At start, a bad file stops the server with the place named.
    std::fs::write(
        tmp.path().join("more.yml"),
        "groups:\n  - name: b\n    rules:\n      - alert: ''\n        expr: up\n",
    )
    .unwrap();
    let out = Command::new(common::proc::tidemark_bin())
        .args(["--listen", &format!("127.0.0.1:{}", free_port())])
        .arg("--data-dir")
        .arg(tmp.path().join("data2"))
        .args(["--rule-files", &format!("{}/*.yml", tmp.path().display())])
        .output()
        .unwrap();
    assert!(!out.status.success());
    // The log goes to stdout, clap's errors to stderr.
    let err = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        err.contains("more.yml") && err.contains("rule 1") && err.contains("exactly one of"),
        "{err}"
    );
}

/// `prometheus_rule_group_iterations_total` of the group `file;group` on
/// `/metrics` (the same name and label in Prometheus and Tidemark).
fn iterations(addr: &str, file: &Path, group: &str) -> f64 {
    let Some((_, body)) = http::get(addr, "/metrics") else {
        return 0.0;
    };
    let prefix = format!(
        "prometheus_rule_group_iterations_total{{rule_group=\"{};{group}\"}} ",
        file.display()
    );
    body.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// A series of a range selector's result: labels (JSON) and points.
type Points = (String, Vec<(f64, String)>);

/// A range selector's result, sorted by labels.
fn matrix(addr: &str, query: &str, t: f64) -> Vec<Points> {
    let path = format!("/api/v1/query?query={}&time={t}", http::encode(query));
    let v = json(addr, &path);
    let mut out: Vec<Points> = v["data"]["result"]
        .as_array()
        .unwrap_or_else(|| panic!("{addr} {query}: {v}"))
        .iter()
        .map(|s| {
            let points = s["values"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| (p[0].as_f64().unwrap(), p[1].as_str().unwrap().to_string()))
                .collect();
            (s["metric"].to_string(), points)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

#[test]
fn recording_outputs_and_alert_evaluations_match_prometheus() {
    let prometheus = find_bin("prometheus").expect("prometheus (Debian package) not installed");
    let tmp = tempfile::tempdir().unwrap();
    let rules = tmp.path().join("rules.yml");
    std::fs::write(&rules, RULES).unwrap();
    let prom_addr = format!("127.0.0.1:{}", free_port());
    let prom_dir = tmp.path().join("prometheus");
    std::fs::create_dir_all(&prom_dir).unwrap();
    let config = format!(
        "global:\n  scrape_interval: 1h\n  evaluation_interval: 1s\n  external_labels:\n    cluster: test\nrule_files:\n  - {}\n",
        rules.display()
    );
    let mut prom = common::proc::start_prometheus_with(
        &prometheus,
        &prom_addr,
        &prom_dir,
        &config,
        &["--web.enable-remote-write-receiver"],
    );
    wait_ready(&mut prom, &prom_addr, Duration::from_secs(60));
    let addr = format!("127.0.0.1:{}", free_port());
    let mut tm = start_tidemark_with(
        &addr,
        &tmp.path().join("data"),
        &[
            "--rule-files",
            rules.to_str().unwrap(),
            "--rules.evaluation-interval",
            "1s",
            "--external-label",
            "cluster=test",
        ],
    );
    wait_ready(&mut tm, &addr, Duration::from_secs(60));
    // Both past their `for` restore (after the second evaluation) before
    // any data exists, so both see the data from the same evaluation on.
    wait_until("three evaluations on both", Duration::from_secs(30), || {
        iterations(&prom_addr, &rules, "rooms") >= 3.0 && iterations(&addr, &rules, "rooms") >= 3.0
    });
    // Timestamps 1.5 s ahead: the write reaches both before any
    // evaluation that could see it runs.
    let t0 = now_ms() + 1_500;
    let kitchen: &[(&str, &str)] = &[("__name__", "temperature"), ("room", "kitchen")];
    let hall: &[(&str, &str)] = &[("__name__", "temperature"), ("room", "hall")];
    for a in [&prom_addr, &addr] {
        http::remote_write_v1(a, &[(kitchen, t0, 35.0), (hall, t0, 20.0)]);
        http::remote_write_v1(a, &[(kitchen, t0 + 3_000, 37.5)]);
    }
    let firing = |a: &str| {
        json(
            a,
            &format!(
                "/api/v1/query?query={}",
                http::encode("ALERTS{alertstate=\"firing\"}")
            ),
        )["data"]["result"]
            .as_array()
            .is_some_and(|r| !r.is_empty())
    };
    wait_until("firing on both", Duration::from_secs(30), || {
        firing(&prom_addr) && firing(&addr)
    });
    std::thread::sleep(Duration::from_secs(3));
    let at = (now_ms() - 500) as f64 / 1000.0;
    for q in [
        "room:temperature:max[30s]",
        "ALERTS[30s]",
        "ALERTS_FOR_STATE[30s]",
    ] {
        let (want, got) = (matrix(&prom_addr, q, at), matrix(&addr, q, at));
        assert!(!want.is_empty(), "{q}: Prometheus has nothing");
        assert_eq!(got, want, "{q}: Tidemark vs Prometheus");
    }
    tm.assert_alive(&addr);
}
