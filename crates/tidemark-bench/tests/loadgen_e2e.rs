//! `tidemark-loadgen` against a real `tidemark` on 127.0.0.1 at a tiny
//! size: every generated series, and exactly the generated number of
//! samples, must be readable through the query API afterwards. Once with
//! synthetic series over remote write 1.0, once over OTLP (gzip), once
//! replaying captured scrapes over 2.0.

mod common;

use std::collections::BTreeSet;
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::http;
use common::proc::{free_port, start_tidemark, wait_ready};
use tidemark_bench::workload::{Spec, Workload};

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Runs the loadgen binary with `args`; returns its summary line.
fn loadgen(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_tidemark-loadgen"))
        .args(args)
        .arg("--no-progress")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "loadgen failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn field(line: &str, key: &str) -> u64 {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(&format!("{key}=")))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{key} missing in {line}"))
}

/// Every series of job "node" in Tidemark, as sorted label lists.
fn stored_series(addr: &str, end_ms: i64) -> BTreeSet<Vec<(String, String)>> {
    let (status, body) = http::get(
        addr,
        &format!(
            "/api/v1/series?match[]=%7Bjob%3D%22node%22%7D&start=0&end={}",
            end_ms / 1000 + 1
        ),
    )
    .unwrap();
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            s.as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
                .collect()
        })
        .collect()
}

/// Samples of job "node" in the hour before `end_ms` (a range selector
/// queried instantly returns them all).
fn stored_samples(addr: &str, end_ms: i64) -> u64 {
    let q = http::encode(r#"{job="node"}[1h]"#);
    let (status, body) = http::get(
        addr,
        &format!("/api/v1/query?query={q}&time={}", end_ms as f64 / 1000.0),
    )
    .unwrap();
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["values"].as_array().unwrap().len() as u64)
        .sum()
}

/// A fresh `tidemark` under `dir/data` that the loadgen has replayed the
/// captures in `captures` into, with `extra` flags; returns the server
/// (killed on drop), its address, the history's end and the summary line.
fn replay_into_tidemark(
    dir: &std::path::Path,
    captures: &std::path::Path,
    extra: &[&str],
) -> (common::proc::Proc, String, i64, String) {
    let addr = format!("127.0.0.1:{}", free_port());
    let mut tm = start_tidemark(&addr, &dir.join("data"));
    wait_ready(&mut tm, &addr, Duration::from_secs(30));
    let end_ms = now_ms();
    let (url, end) = (
        format!("http://{addr}/api/v1/write"),
        format!("--end-ms={end_ms}"),
    );
    let mut args = vec!["--url", &url, "--replay", captures.to_str().unwrap(), &end];
    args.extend_from_slice(extra);
    let line = loadgen(&args);
    (tm, addr, end_ms, line)
}

#[test]
fn loadgen_v1_synthetic_every_series_and_sample_arrives() {
    let dir = tempfile::tempdir().unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let mut tm = start_tidemark(&addr, dir.path());
    wait_ready(&mut tm, &addr, Duration::from_secs(30));

    let end_ms = now_ms();
    let spec = Spec {
        targets: 3,
        series_per_target: 320,
        scrapes: 20,
        interval_ms: 15_000,
        jitter_ms: 5,
        end_ms,
        shards: 3,
        max_samples_per_send: 500,
        seed: 11,
    };
    let line = loadgen(&[
        "--url",
        &format!("http://{addr}/api/v1/write"),
        "--targets=3",
        "--series-per-target=320",
        "--scrapes=20",
        "--shards=3",
        "--max-samples-per-send=500",
        "--seed=11",
        "--protocol=1",
        &format!("--end-ms={end_ms}"),
    ]);
    assert_eq!(field(&line, "samples_ok"), spec.total_samples(), "{line}");
    assert_eq!(field(&line, "requests_failed"), 0);

    let want: BTreeSet<Vec<(String, String)>> = Workload::generate(spec.clone())
        .series
        .into_iter()
        .map(|s| s.labels)
        .collect();
    assert_eq!(want.len(), spec.active_series());
    assert_eq!(stored_series(&addr, end_ms), want);
    assert_eq!(stored_samples(&addr, end_ms), spec.total_samples());
}

/// `--protocol=otlp --otlp-gzip`: the same series as remote write, after
/// the server's default OTLP translation, and every sample.
#[test]
fn loadgen_otlp_synthetic_every_series_and_sample_arrives() {
    let dir = tempfile::tempdir().unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let mut tm = start_tidemark(&addr, dir.path());
    wait_ready(&mut tm, &addr, Duration::from_secs(30));

    let end_ms = now_ms();
    let spec = Spec {
        targets: 2,
        series_per_target: 320,
        scrapes: 10,
        interval_ms: 15_000,
        jitter_ms: 5,
        end_ms,
        shards: 2,
        max_samples_per_send: 500,
        seed: 12,
    };
    let line = loadgen(&[
        "--url",
        &format!("http://{addr}/api/v1/otlp/v1/metrics"),
        "--targets=2",
        "--series-per-target=320",
        "--scrapes=10",
        "--shards=2",
        "--max-samples-per-send=500",
        "--seed=12",
        "--protocol=otlp",
        "--otlp-gzip",
        &format!("--end-ms={end_ms}"),
    ]);
    assert_eq!(field(&line, "samples_ok"), spec.total_samples(), "{line}");
    assert_eq!(field(&line, "requests_failed"), 0);
    let want: BTreeSet<Vec<(String, String)>> = Workload::generate(spec.clone())
        .series
        .into_iter()
        .map(|s| s.labels)
        .collect();
    assert_eq!(stored_series(&addr, end_ms), want);
    assert_eq!(stored_samples(&addr, end_ms), spec.total_samples());
    let (_, metrics) = http::get(&addr, "/metrics").unwrap();
    assert!(
        metrics.contains("tidemark_otlp_data_points_total{result=\"rejected\"} 0"),
        "{metrics}"
    );
}

#[test]
fn loadgen_v2_replay_every_series_and_sample_arrives() {
    let dir = tempfile::tempdir().unwrap();
    let captures = dir.path().join("captures");
    std::fs::create_dir_all(&captures).unwrap();
    for (k, (idle, load)) in [(100.5, "0.3"), (115.25, "0.5"), (130.0, "0.1")]
        .iter()
        .enumerate()
    {
        std::fs::write(
            captures.join(format!("scrape-{k:04}.prom")),
            format!(
                "# TYPE node_cpu_seconds_total counter\n\
                 node_cpu_seconds_total{{cpu=\"0\",mode=\"idle\"}} {idle}\n\
                 node_cpu_seconds_total{{cpu=\"0\",mode=\"user\"}} 7\n\
                 # TYPE node_load1 gauge\nnode_load1 {load}\n"
            ),
        )
        .unwrap();
    }
    let (_tm, addr, end_ms, line) = replay_into_tidemark(
        dir.path(),
        &captures,
        &["--targets=4", "--scrapes=10", "--shards=2", "--protocol=2"],
    );
    // 3 series per target (the captures decide), 4 targets, 10 scrapes.
    assert_eq!(field(&line, "series"), 12, "{line}");
    assert_eq!(field(&line, "samples_ok"), 120, "{line}");
    assert_eq!(stored_series(&addr, end_ms).len(), 12);
    assert_eq!(stored_samples(&addr, end_ms), 120);
    // The replayed counter kept growing past its last capture.
    let q = http::encode(r#"max(node_cpu_seconds_total{mode="idle"})"#);
    let (_, body) = http::get(
        &addr,
        &format!("/api/v1/query?query={q}&time={}", end_ms as f64 / 1000.0),
    )
    .unwrap();
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let last: f64 = v["data"]["result"][0]["value"][1]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(last > 130.0, "{body}");
}

#[test]
fn loadgen_capture_real_node_exporter_replays_in_full() {
    let Some(exporter) = common::proc::find_bin("prometheus-node-exporter") else {
        assert!(
            std::env::var("TIDEMARK_SKIP_E2E").as_deref() == Ok("1"),
            "prometheus-node-exporter is needed (scripts/test installs it)"
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let ne_addr = format!("127.0.0.1:{}", free_port());
    let child = Command::new(exporter)
        .arg(format!("--web.listen-address={ne_addr}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let _ne = common::proc::Proc(child, "node_exporter");
    common::proc::wait_until("node_exporter", Duration::from_secs(30), || {
        http::get(&ne_addr, "/metrics").is_some_and(|r| r.0 == 200)
    });
    let captures = dir.path().join("captures");
    let out = Command::new(env!("CARGO_BIN_EXE_tidemark-loadgen"))
        .args([
            "capture",
            "--url",
            &format!("http://{ne_addr}/metrics"),
            "--count=2",
            "--interval=200ms",
            "--out",
        ])
        .arg(&captures)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let (_tm, addr, end_ms, line) =
        replay_into_tidemark(dir.path(), &captures, &["--targets=2", "--scrapes=5"]);
    let series = field(&line, "series");
    assert!(
        series > 200,
        "a real node_exporter exposes hundreds of series: {line}"
    );
    assert_eq!(field(&line, "samples_ok"), series * 5);
    assert_eq!(stored_series(&addr, end_ms).len() as u64, series);
    assert_eq!(stored_samples(&addr, end_ms), series * 5);
}
