//! Side-by-side PromQL range-query timing against Prometheus, in one run:
//! starts Debian's Prometheus 2.42 (remote-write receiver on) and the
//! `tidemark` release binary on 127.0.0.1, remote-writes the same data to
//! both (10k counter series and 10k classic-histogram bucket series, 1 h 5 m
//! at 15 s), then times `query_range` over the last hour at a 15 s step
//! through each server's HTTP API and prints medians and the ratio.
//!
//! Run: `cargo bench --bench promql_compare` (needs `prometheus` installed;
//! scripts/test installs it). Without `--bench` (as under `cargo test
//! --all-targets`) it only checks its arguments and exits.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use prost::Message;
use tidemark::ingest::proto::prometheus as pb;

const STEP_MS: i64 = 15_000;
const RUNS: usize = 7;

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn request(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Option<(u16, Vec<u8>)> {
    let mut s = TcpStream::connect_timeout(&addr.parse().ok()?, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(120))).ok()?;
    let mut head = format!(
        "{method} {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).ok()?;
    s.write_all(body).ok()?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).ok()?;
    let split = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let status = String::from_utf8_lossy(&buf[..split])
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some((status, buf[split + 4..].to_vec()))
}

fn wait_ready(addr: &str, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while request(addr, "GET", "/-/ready", &[], b"").map(|r| r.0) != Some(200) {
        assert!(Instant::now() < deadline, "{what} not ready in 60 s");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn label(n: &str, v: &str) -> pb::Label {
    pb::Label {
        name: Bytes::copy_from_slice(n.as_bytes()),
        value: Bytes::copy_from_slice(v.as_bytes()),
    }
}

fn encode(q: &str) -> String {
    q.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("promql_compare: run with `cargo bench --bench promql_compare`");
        return;
    }
    let prometheus = ["/usr/bin/prometheus", "/usr/local/bin/prometheus"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("prometheus installed");
    let dir = tempfile::tempdir().unwrap();
    let (tm, prom) = (
        format!("127.0.0.1:{}", free_port()),
        format!("127.0.0.1:{}", free_port()),
    );
    let tm_bin = env!("CARGO_BIN_EXE_tidemark");
    let _t = Proc(
        Command::new(tm_bin)
            .args([
                "--listen",
                &tm,
                "--log-level",
                "warn",
                "--wal-fsync",
                "none",
            ])
            .arg("--data-dir")
            .arg(dir.path().join("tm"))
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    std::fs::write(dir.path().join("p.yml"), "global:\n  scrape_interval: 1h\n").unwrap();
    let _p = Proc(
        Command::new(prometheus)
            .arg(format!(
                "--config.file={}",
                dir.path().join("p.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("prom").display()
            ))
            .arg(format!("--web.listen-address={prom}"))
            .arg("--web.enable-remote-write-receiver")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_ready(&tm, "tidemark");
    wait_ready(&prom, "prometheus");

    // 1000 instances x (10 counters + 10 buckets) = 20k series.
    let les = [
        "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "+Inf",
    ];
    let mut series: Vec<Vec<pb::Label>> = Vec::new();
    for i in 0..1000 {
        for k in 0..10 {
            series.push(vec![
                label("__name__", "http_requests_total"),
                label("code", &format!("{}", 200 + k)),
                label("instance", &format!("i{i}")),
                label("job", &format!("job{}", i % 10)),
            ]);
        }
        for le in les {
            series.push(vec![
                label("__name__", "request_duration_seconds_bucket"),
                label("instance", &format!("i{i}")),
                label("job", &format!("job{}", i % 10)),
                label("le", le),
            ]);
        }
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let points = 65 * 60 * 1000 / STEP_MS + 1;
    let t0 = (now - points * STEP_MS) / STEP_MS * STEP_MS;
    let started = Instant::now();
    for p in 0..points {
        for (c, chunk) in series.chunks(2000).enumerate() {
            let timeseries = chunk
                .iter()
                .enumerate()
                .map(|(k, labels)| {
                    let n = c * 2000 + k;
                    let v = if n % 20 < 10 {
                        (p * (n as i64 % 7 + 1)) as f64
                    } else {
                        (p as f64) * ((n % 20) as f64 - 9.0) * 3.0
                    };
                    pb::TimeSeries {
                        labels: labels.clone(),
                        samples: vec![pb::Sample {
                            value: v,
                            timestamp: t0 + p * STEP_MS,
                        }],
                        ..Default::default()
                    }
                })
                .collect();
            let body = snap::raw::Encoder::new()
                .compress_vec(
                    &pb::WriteRequest {
                        timeseries,
                        ..Default::default()
                    }
                    .encode_to_vec(),
                )
                .unwrap();
            for addr in [&tm, &prom] {
                let r = request(
                    addr,
                    "POST",
                    "/api/v1/write",
                    &[
                        ("Content-Type", "application/x-protobuf"),
                        ("Content-Encoding", "snappy"),
                    ],
                    &body,
                );
                assert!(matches!(r, Some((200..=299, _))), "write to {addr}: {r:?}");
            }
        }
    }
    println!(
        "loaded {} series x {points} samples into both in {:.1}s",
        series.len(),
        started.elapsed().as_secs_f64()
    );

    let (start, end) = (
        (t0 + 5 * 60_000) as f64 / 1000.0,
        (t0 + (points - 1) * STEP_MS) as f64 / 1000.0,
    );
    for q in [
        "sum by (job) (rate(http_requests_total[5m]))",
        "histogram_quantile(0.9, sum by (le, job) (rate(request_duration_seconds_bucket[5m])))",
    ] {
        let path = format!(
            "/api/v1/query_range?query={}&start={start}&end={end}&step=15",
            encode(q)
        );
        let mut medians = Vec::new();
        for (name, addr) in [("tidemark", &tm), ("prometheus", &prom)] {
            let mut times = Vec::new();
            for _ in 0..RUNS {
                let t = Instant::now();
                let (status, body) = request(addr, "GET", &path, &[], b"").expect("query");
                times.push(t.elapsed().as_secs_f64() * 1000.0);
                assert_eq!(status, 200, "{name}: {}", String::from_utf8_lossy(&body));
            }
            times.sort_by(f64::total_cmp);
            medians.push(times[RUNS / 2]);
            println!(
                "{name:>10}: {q}: median {:.1} ms over {RUNS} runs",
                times[RUNS / 2]
            );
        }
        println!(
            "  ratio tidemark/prometheus = {:.2}",
            medians[0] / medians[1]
        );
    }
}
