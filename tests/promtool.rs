//! A real client against the real binary: Debian's `promtool` (2.42, from
//! the `prometheus` package that `scripts/test` installs) runs
//! `query instant`, `query range`, `query series` and `query labels` against
//! `tidemark` on loopback, after data arrives by remote write. Every step is
//! bounded by a time-out.

mod common;

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use common::http;
use prost::Message;
use tidemark::ingest::proto::prometheus as v1;

const PROMTOOL: &str = "/usr/bin/promtool";

struct Server {
    child: Child,
    addr: String,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start() -> Server {
    let dir = tempfile::tempdir().unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let child = Command::new(env!("CARGO_BIN_EXE_tidemark"))
        .args(["--listen", &addr, "--log-level", "warn", "--data-dir"])
        .arg(dir.path().join("data"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut s = Server {
        child,
        addr,
        _dir: dir,
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while http::get(&s.addr, "/-/ready").map(|r| r.0) != Some(200) {
        assert!(Instant::now() < deadline, "not ready within 30 s");
        assert!(s.child.try_wait().unwrap().is_none(), "server exited early");
        std::thread::sleep(Duration::from_millis(50));
    }
    s
}

fn label(n: &str, v: &str) -> v1::Label {
    v1::Label {
        name: Bytes::copy_from_slice(n.as_bytes()),
        value: Bytes::copy_from_slice(v.as_bytes()),
    }
}

/// Runs promtool with a hard time-out; returns stdout, panicking with
/// stderr on failure.
fn promtool(args: &[&str]) -> String {
    let out = Command::new("timeout")
        .arg("60")
        .arg(PROMTOOL)
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "promtool {args:?} failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    stdout
}

#[test]
fn promtool_queries_tidemark() {
    if !Path::new(PROMTOOL).exists() {
        assert!(
            std::env::var_os("CI").is_none(),
            "{PROMTOOL} missing in CI (scripts/test installs the prometheus package)"
        );
        eprintln!("skipping: {PROMTOOL} not installed");
        return;
    }
    let s = start();
    let url = format!("http://{}", s.addr);
    // One sample per 15 s over the last 5 minutes, ending ~now.
    let now_s = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let end_s = now_s - 1;
    let start_s = end_s - 300;
    let series = |job: &str, inst: &str, v: f64| v1::TimeSeries {
        labels: vec![
            label("__name__", "tm_up"),
            label("instance", inst),
            label("job", job),
        ],
        samples: (0..=20)
            .map(|i| v1::Sample {
                value: v,
                timestamp: (start_s + i * 15) * 1000,
            })
            .collect(),
        ..Default::default()
    };
    let req = v1::WriteRequest {
        timeseries: vec![series("a", "i1", 1.0), series("b", "i2", 0.0)],
        ..Default::default()
    };
    let body = snap::raw::Encoder::new()
        .compress_vec(&req.encode_to_vec())
        .unwrap();
    let (status, resp) = http::request(
        &s.addr,
        "POST",
        "/api/v1/write",
        &[
            (
                "Content-Type",
                "application/x-protobuf;proto=prometheus.WriteRequest",
            ),
            ("Content-Encoding", "snappy"),
        ],
        &body,
    )
    .expect("remote write reaches the server");
    assert_eq!(status, 204, "{}", String::from_utf8_lossy(&resp));

    // Instant query at the last sample (RFC 3339 and unix forms of --time).
    let out = promtool(&[
        "query",
        "instant",
        "--time",
        &end_s.to_string(),
        &url,
        "tm_up",
    ]);
    assert!(
        out.contains(&format!(
            r#"tm_up{{instance="i1", job="a"}} => 1 @[{end_s}]"#
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            r#"tm_up{{instance="i2", job="b"}} => 0 @[{end_s}]"#
        )),
        "{out}"
    );
    let out = promtool(&["query", "instant", &url, "count(tm_up) * 21"]);
    assert!(out.contains("{} => 42 @["), "{out}");
    let out = promtool(&["query", "instant", &url, "1+1"]);
    assert!(out.starts_with("scalar: 2 @["), "{out}");

    // Range query over the data with an explicit step.
    let out = promtool(&[
        "query",
        "range",
        "--start",
        &start_s.to_string(),
        "--end",
        &(start_s + 60).to_string(),
        "--step",
        "15s",
        &url,
        r#"tm_up{job="a"}"#,
    ]);
    assert!(out.contains(r#"tm_up{instance="i1", job="a"} =>"#), "{out}");
    for i in 0..=4 {
        assert!(
            out.contains(&format!("1 @[{}]", start_s + i * 15)),
            "point {i} missing: {out}"
        );
    }
    assert!(!out.contains(r#"job="b""#), "{out}");

    // Series and label values.
    let out = promtool(&["query", "series", "--match", r#"tm_up{job="b"}"#, &url]);
    assert_eq!(
        out.trim(),
        r#"{__name__="tm_up", instance="i2", job="b"}"#,
        "{out}"
    );
    let out = promtool(&["query", "series", "--match", "tm_up", &url]);
    assert_eq!(out.lines().count(), 2, "{out}");
    let out = promtool(&["query", "labels", &url, "job"]);
    assert_eq!(
        out.split_whitespace().collect::<Vec<_>>(),
        ["a", "b"],
        "{out}"
    );
    let out = promtool(&["query", "labels", &url, "__name__"]);
    assert_eq!(out.trim(), "tm_up", "{out}");

    // A bad query surfaces Prometheus's error through client_golang.
    let out = Command::new("timeout")
        .args(["60", PROMTOOL, "query", "instant", &url, "tm_up{"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad_data"), "{err}");
}
