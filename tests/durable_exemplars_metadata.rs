//! Exemplars and metric metadata survive restarts of the real binary
//! (issue 22): `/api/v1/query_exemplars` and `/api/v1/metadata` answer the
//! same after a `kill -9` (WAL replay), after a clean stop (the head
//! persisted to blocks, exemplars and metadata in `head_metadata`) and after
//! a `kill -9` following that restart (the file is kept as their only copy),
//! for data sent by our own remote write 2.0
//! requests and by Debian's Prometheus 2.42 (which scrapes an OpenMetrics
//! target with exemplars and sends exemplars and metadata over remote
//! write 1.0).
//!
//! The Prometheus test needs `prometheus` (scripts/test installs it); set
//! `TIDEMARK_SKIP_E2E=1` to skip it on a machine without it.

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::http;
use common::proc::{
    find_bin, free_port, start_prometheus_with, start_tidemark_with, wait_ready, wait_until, Proc,
};
use prost::Message;
use tidemark::ingest::proto::write_v2 as v2;

const V2_CT: &str = "application/x-protobuf;proto=io.prometheus.write.v2.Request";

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// A tidemark process on a fixed address and data directory, restartable.
struct Node {
    addr: String,
    dir: std::path::PathBuf,
    proc: Option<Proc>,
}

impl Node {
    fn start(dir: &Path) -> Node {
        let mut n = Node {
            addr: format!("127.0.0.1:{}", free_port()),
            dir: dir.to_path_buf(),
            proc: None,
        };
        n.restart();
        n
    }

    fn restart(&mut self) {
        assert!(self.proc.is_none());
        // WAL fsync off (the helper's setting): `kill -9` loses nothing
        // written to the page cache, which is what this test kills.
        let mut p = start_tidemark_with(&self.addr, &self.dir, &[]);
        wait_ready(&mut p, &self.addr, Duration::from_secs(60));
        self.proc = Some(p);
    }

    fn kill_9(&mut self) {
        let mut p = self.proc.take().expect("running");
        p.0.kill().unwrap();
        p.0.wait().unwrap();
    }

    fn stop(&mut self) {
        let mut p = self.proc.take().expect("running");
        p.terminate(Duration::from_secs(60));
    }

    fn get_json(&self, path: &str) -> serde_json::Value {
        let (status, body) = http::get(&self.addr, path).expect("tidemark answers");
        assert_eq!(status, 200, "{path}: {body}");
        serde_json::from_str(&body).unwrap()
    }

    /// The two answers that must survive: exemplars of every series (a
    /// selector matching all) and all metadata.
    fn answers(&self) -> (serde_json::Value, serde_json::Value) {
        let q = http::encode(r#"{__name__=~".+"}"#);
        (
            self.get_json(&format!(
                "/api/v1/query_exemplars?query={q}&start=0&end=4102444800"
            )),
            self.get_json("/api/v1/metadata"),
        )
    }

    fn exemplar_count(&self) -> usize {
        let (ex, _) = self.answers();
        ex["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| g["exemplars"].as_array().unwrap().len())
            .sum()
    }

    fn post_v2(&self, req: &v2::Request) -> http::Response {
        let body = snap::raw::Encoder::new()
            .compress_vec(&req.encode_to_vec())
            .unwrap();
        http::request_full(
            &self.addr,
            "POST",
            "/api/v1/write",
            &[("Content-Type", V2_CT), ("Content-Encoding", "snappy")],
            &body,
        )
        .expect("tidemark answers")
    }
}

/// An exemplar for [`V2Builder::series`]: label pairs, value, time.
type Exemplar<'a> = (&'a [(&'a str, &'a str)], f64, i64);

/// A 2.0 request building its symbol table as strings are added.
#[derive(Default)]
struct V2Builder {
    symbols: Vec<String>,
    series: Vec<v2::TimeSeries>,
}

impl V2Builder {
    fn new() -> Self {
        Self {
            symbols: vec![String::new()],
            series: Vec::new(),
        }
    }

    fn sym(&mut self, s: &str) -> u32 {
        if let Some(i) = self.symbols.iter().position(|x| x == s) {
            return i as u32;
        }
        self.symbols.push(s.to_string());
        (self.symbols.len() - 1) as u32
    }

    /// One series with samples, exemplars `(labels, value, t)` and metadata
    /// `(type, help, unit)`.
    fn series(
        mut self,
        labels: &[(&str, &str)],
        samples: &[(i64, f64)],
        exemplars: &[Exemplar<'_>],
        metadata: Option<(i32, &str, &str)>,
    ) -> Self {
        let labels_refs = labels
            .iter()
            .flat_map(|(n, v)| [n, v])
            .map(|s| self.sym(s))
            .collect();
        let exemplars = exemplars
            .iter()
            .map(|(l, value, t)| v2::Exemplar {
                labels_refs: l
                    .iter()
                    .flat_map(|(n, v)| [n, v])
                    .map(|s| self.sym(s))
                    .collect(),
                value: *value,
                timestamp: *t,
            })
            .collect();
        let metadata = metadata.map(|(r#type, help, unit)| v2::Metadata {
            r#type,
            help_ref: self.sym(help),
            unit_ref: self.sym(unit),
        });
        self.series.push(v2::TimeSeries {
            labels_refs,
            samples: samples
                .iter()
                .map(|&(t, v)| v2::Sample {
                    value: v,
                    timestamp: t,
                    start_timestamp: 0,
                })
                .collect(),
            exemplars,
            metadata,
            ..Default::default()
        });
        self
    }

    fn build(self) -> v2::Request {
        v2::Request {
            symbols: self.symbols.into_iter().map(Bytes::from).collect(),
            timeseries: self.series,
        }
    }
}

/// Asserts the answers after a restart equal `want` and hold data.
fn assert_same(node: &Node, want: &(serde_json::Value, serde_json::Value), after: &str) {
    let got = node.answers();
    assert_eq!(got.0, want.0, "query_exemplars differs after {after}");
    assert_eq!(got.1, want.1, "metadata differs after {after}");
}

#[test]
fn v2_exemplars_and_metadata_survive_kill_9_and_clean_stop() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = Node::start(dir.path());
    let t = now_ms() - 60_000;
    let trace = |id: &'static str| -> [(&'static str, &'static str); 2] {
        [("span_id", "s1"), ("trace_id", id)]
    };
    for k in 0..5i64 {
        let t = t + k * 1000;
        let (a, b) = (trace("a"), trace("b"));
        let req = V2Builder::new()
            .series(
                &[("__name__", "http_requests_total"), ("job", "api")],
                &[(t, k as f64)],
                &[(&a[..], 0.25 + k as f64, t)],
                Some((1, "Requests served.", "")),
            )
            .series(
                &[("__name__", "request_seconds"), ("job", "api")],
                &[(t, 0.5)],
                &[(&b[..], 0.5, t), (&[][..], 0.75, t + 1)],
                Some((2, "Request time ☃.", "seconds")),
            )
            .build();
        let r = node.post_v2(&req);
        assert_eq!(r.status, 204, "{}", String::from_utf8_lossy(&r.body));
        assert_eq!(
            r.header("x-prometheus-remote-write-exemplars-written"),
            Some("3")
        );
    }
    let want = node.answers();
    assert_eq!(node.exemplar_count(), 15);
    assert_eq!(
        want.1["data"]["request_seconds"][0]["unit"], "seconds",
        "{}",
        want.1
    );

    node.kill_9();
    node.restart();
    assert_same(&node, &want, "kill -9 (WAL replay)");

    // A resend after the restart is a duplicate (ignored), an older one out
    // of order (dropped, counted); neither fails the samples.
    let a = trace("a");
    let t4 = t + 4000;
    let resend = V2Builder::new()
        .series(
            &[("__name__", "http_requests_total"), ("job", "api")],
            &[(t4, 4.0)],
            &[(&a[..], 4.25, t4), (&a[..], 9.0, t)],
            Some((1, "Requests served.", "")),
        )
        .build();
    let r = node.post_v2(&resend);
    assert_eq!(r.status, 204, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(
        http::metric(
            &node.addr,
            r#"tidemark_remote_write_exemplars_dropped_total{reason="out_of_order"}"#
        ),
        Some(1.0)
    );
    assert_same(&node, &want, "a resend after kill -9");

    node.stop();
    assert!(dir.path().join("head_metadata").exists());
    assert!(!dir.path().join("head_snapshot").exists());
    node.restart();
    // Kept: the WAL no longer holds these exemplars.
    assert!(dir.path().join("head_metadata").exists());
    assert_same(&node, &want, "clean stop (head persisted + head_metadata)");
    assert_eq!(
        http::metric(&node.addr, "tidemark_head_exemplars"),
        Some(15.0)
    );
    assert_eq!(
        http::metric(&node.addr, "tidemark_head_metadata_families"),
        Some(2.0)
    );

    node.kill_9();
    node.restart();
    assert_same(&node, &want, "a second kill -9");
}

/// Serves an OpenMetrics page with exemplars until dropped.
struct Exposition {
    addr: String,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// The page at `now_ms`: exemplars stamped with the scrape's time, so each
/// scrape adds new ones (Prometheus keeps one per series otherwise).
fn openmetrics(now_ms: i64) -> String {
    let t = format!("{}.{:03}", now_ms / 1000, now_ms % 1000);
    format!(
        "# TYPE demo_requests counter\n\
# HELP demo_requests Requests handled by the demo.\n\
demo_requests_total{{path=\"/a\"}} 7 # {{trace_id=\"abc123\"}} 1.5 {t}\n\
demo_requests_total{{path=\"/b\"}} 3 # {{trace_id=\"def456\",span_id=\"9\"}} 2.5 {t}\n\
# TYPE demo_temp_celsius gauge\n\
# UNIT demo_temp_celsius celsius\n\
# HELP demo_temp_celsius A temperature.\n\
demo_temp_celsius 21.5\n\
# EOF\n"
    )
}

impl Exposition {
    fn start() -> Exposition {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            while !flag.load(Ordering::Acquire) {
                let Ok((mut conn, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                };
                let _ = conn.set_nonblocking(false);
                let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
                let mut buf = [0u8; 4096];
                let mut req = Vec::new();
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                let page = openmetrics(now_ms());
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/openmetrics-text; version=1.0.0; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    page.len()
                );
                let _ = conn.write_all(head.as_bytes());
                let _ = conn.write_all(page.as_bytes());
            }
        });
        Exposition {
            addr,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Exposition {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[test]
fn prometheus_exemplars_and_metadata_survive_kill_9_and_clean_stop() {
    let Some(prometheus) = find_bin("prometheus") else {
        if std::env::var("TIDEMARK_SKIP_E2E").as_deref() == Ok("1") {
            eprintln!("skipping: prometheus not installed");
            return;
        }
        panic!(
            "prometheus must be installed (apt-get install -y prometheus; scripts/test does it)"
        );
    };
    let dir = tempfile::tempdir().unwrap();
    let mut node = Node::start(&dir.path().join("tidemark"));
    let target = Exposition::start();
    let prom_addr = format!("127.0.0.1:{}", free_port());
    let config = format!(
        "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: demo\n    static_configs:\n      - targets: ['{}']\nremote_write:\n  - url: http://{}/api/v1/write\n    send_exemplars: true\n    queue_config:\n      batch_send_deadline: 1s\n    metadata_config:\n      send: true\n      send_interval: 1s\n",
        target.addr, node.addr
    );
    let mut prom = start_prometheus_with(
        &prometheus,
        &prom_addr,
        dir.path(),
        &config,
        &["--enable-feature=exemplar-storage"],
    );
    wait_until("prometheus ready", Duration::from_secs(60), || {
        http::get(&prom_addr, "/-/ready").is_some_and(|r| r.0 == 200)
    });
    wait_until(
        "exemplars and metadata from Prometheus",
        Duration::from_secs(120),
        || {
            let (ex, md) = node.answers();
            let families = md["data"].as_object().map_or(0, |m| m.len());
            let groups = ex["data"].as_array().map_or(0, |g| g.len());
            node.exemplar_count() >= 6 && groups >= 2 && families >= 2
        },
    );
    prom.terminate(Duration::from_secs(60));
    drop(target);
    let want = node.answers();
    let md = &want.1["data"];
    assert_eq!(md["demo_requests"][0]["type"], "counter", "{md}");
    assert_eq!(md["demo_temp_celsius"][0]["unit"], "celsius", "{md}");
    let first = &want.0["data"][0]["exemplars"][0]["labels"];
    assert!(first["trace_id"].is_string(), "{}", want.0);

    node.kill_9();
    node.restart();
    assert_same(&node, &want, "kill -9 (WAL replay)");
    node.stop();
    node.restart();
    assert_same(&node, &want, "clean stop (head persisted + head_metadata)");
    node.kill_9();
    node.restart();
    assert_same(&node, &want, "kill -9 after a clean restart");
}
