//! End-to-end remote-write ingest over HTTP on loopback: the real router
//! (`tidemark::api::router`) served by axum in-process on 127.0.0.1:0, a
//! `Db` on a temp dir with the default fsync=batch, and N concurrent clients
//! (keep-alive HTTP/1.1 over `TcpStream`) POSTing pre-encoded 1.0 requests of
//! 2,000 samples each. 100k node_exporter-like series are cycled in
//! 2,000-series requests; every round advances timestamps by 15 s. Each
//! client owns a fixed share of the series, so samples stay in order per
//! series. Prints samples/s and p50/p99 request latency per client count.
//!
//! Run: `cargo bench --bench ingest_http`. Without `--bench` (as under
//! `cargo test --all-targets`) it runs a smoke version of a few requests.
//! `TIDEMARK_BENCH_ROUNDS` (default 10) sets the rounds per client count.
//! Every run stops after [`MAX_RUN`] whatever the round count.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use prost::Message;
use tidemark::api::{router, AppState};
use tidemark::ingest::proto::prometheus as v1;
use tidemark::ingest::{Receiver, ReceiverOptions};
use tidemark::storage::{Db, Options};

/// Samples (= series) per request: Prometheus's default `max_samples_per_send`.
const BATCH: usize = 2000;
/// Prometheus's default scrape interval.
const SCRAPE_MS: i64 = 15_000;
/// Upper bound on one run's duration, whatever the round count.
const MAX_RUN: Duration = Duration::from_secs(120);
/// Socket time-out for every read and write.
const IO_TIMEOUT: Duration = Duration::from_secs(30);

/// One benchmark configuration.
struct Plan {
    series: usize,
    rounds: usize,
    clients: &'static [usize],
}

/// Labels of series `i`, shaped like a node_exporter scrape (500 series per
/// host: cpu × mode, disks, network devices, memory fields).
fn labels(i: usize) -> Vec<v1::Label> {
    let (host, j) = (i / 500, i % 500);
    let mut l: Vec<(&str, String)> = match j {
        0..=255 => {
            let modes = [
                "idle", "iowait", "irq", "nice", "softirq", "steal", "system", "user",
            ];
            vec![
                ("__name__", "node_cpu_seconds_total".into()),
                ("cpu", (j / 8).to_string()),
                ("mode", modes[j % 8].into()),
            ]
        }
        256..=383 => {
            let metrics = [
                "node_disk_read_bytes_total",
                "node_disk_written_bytes_total",
                "node_disk_reads_completed_total",
                "node_disk_writes_completed_total",
            ];
            vec![
                ("__name__", metrics[j % 4].into()),
                ("device", format!("nvme{}n1", (j - 256) / 4)),
            ]
        }
        384..=447 => vec![
            ("__name__", "node_network_receive_bytes_total".into()),
            ("device", format!("eth{}", j - 384)),
        ],
        _ => vec![("__name__", format!("node_memory_field_{}_bytes", j - 448))],
    };
    l.push(("instance", format!("node-{host:03}.prod.example.com:9100")));
    l.push(("job", "node".into()));
    l.sort();
    l.into_iter()
        .map(|(n, v)| v1::Label {
            name: Bytes::from(n),
            value: Bytes::from(v),
        })
        .collect()
}

/// The snappy body for series `[chunk * BATCH, (chunk + 1) * BATCH)` at `t`.
fn body(chunk: usize, round: usize, t: i64) -> Vec<u8> {
    let req = v1::WriteRequest {
        timeseries: (chunk * BATCH..(chunk + 1) * BATCH)
            .map(|i| v1::TimeSeries {
                labels: labels(i),
                samples: vec![v1::Sample {
                    // Counters growing by a series-dependent step.
                    value: ((i % 97) * (round + 1)) as f64 * 1.5,
                    timestamp: t,
                }],
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    snap::raw::Encoder::new()
        .compress_vec(&req.encode_to_vec())
        .expect("snappy compresses any input below 4 GiB")
}

/// A keep-alive HTTP/1.1 connection that POSTs remote-write bodies.
struct Client {
    addr: SocketAddr,
    reader: BufReader<TcpStream>,
}

impl Client {
    fn connect(addr: SocketAddr) -> std::io::Result<Self> {
        let s = TcpStream::connect_timeout(&addr, IO_TIMEOUT)?;
        s.set_read_timeout(Some(IO_TIMEOUT))?;
        s.set_write_timeout(Some(IO_TIMEOUT))?;
        s.set_nodelay(true)?;
        Ok(Self {
            addr,
            reader: BufReader::new(s),
        })
    }

    /// POSTs one body; returns the status code and the response body.
    fn post(&mut self, body: &[u8]) -> std::io::Result<(u16, Vec<u8>)> {
        let head = format!(
            "POST /api/v1/write HTTP/1.1\r\nHost: {}\r\nUser-Agent: tidemark-bench/0\r\n\
             Content-Type: application/x-protobuf\r\nContent-Encoding: snappy\r\n\
             X-Prometheus-Remote-Write-Version: 0.1.0\r\nContent-Length: {}\r\n\r\n",
            self.addr,
            body.len()
        );
        let s = self.reader.get_mut();
        s.write_all(head.as_bytes())?;
        s.write_all(body)?;

        let bad =
            |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string());
        let mut line = String::new();
        self.reader.read_line(&mut line)?;
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad("no status line"))?;
        let mut len = 0usize;
        loop {
            line.clear();
            if self.reader.read_line(&mut line)? == 0 {
                return Err(bad("connection closed in headers"));
            }
            let h = line.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    len = v.trim().parse().map_err(|_| bad("bad content-length"))?;
                } else if k.eq_ignore_ascii_case("transfer-encoding") {
                    return Err(bad("chunked responses are not expected"));
                }
            }
        }
        let mut resp = vec![0; len];
        self.reader.read_exact(&mut resp)?;
        Ok((status, resp))
    }
}

/// A server on 127.0.0.1:0 over a fresh `Db`; dropped with its runtime.
struct Server {
    addr: SocketAddr,
    db: Arc<Db>,
    runtime: tokio::runtime::Runtime,
    _dir: tempfile::TempDir,
}

fn start_server() -> Server {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = Arc::new(Db::open(dir.path(), Options::default()).expect("open Db"));
    let receiver = Arc::new(Receiver::new(db.clone(), ReceiverOptions::default()));
    let state = AppState::new();
    state.set_ready(db.clone(), receiver);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("local addr");
    runtime.spawn(async move { axum::serve(listener, router(state)).await });
    Server {
        addr,
        db,
        runtime,
        _dir: dir,
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i]
}

/// One run: `clients` threads, each owning chunks `c, c + clients, …`.
fn run(plan: &Plan, clients: usize, bodies: &Arc<Vec<Vec<Vec<u8>>>>) {
    let server = start_server();
    let chunks = plan.series / BATCH;
    let start = Instant::now();
    let threads: Vec<_> = (0..clients)
        .map(|c| {
            let bodies = bodies.clone();
            let addr = server.addr;
            std::thread::spawn(move || {
                let mut client = Client::connect(addr).expect("connect to 127.0.0.1");
                let (mut latencies, mut ok, mut failed) = (Vec::new(), 0usize, 0usize);
                'rounds: for round in &*bodies {
                    for body in round.iter().skip(c).step_by(clients) {
                        if start.elapsed() > MAX_RUN {
                            break 'rounds;
                        }
                        let t0 = Instant::now();
                        let (status, resp) = client.post(body).expect("POST /api/v1/write");
                        latencies.push(t0.elapsed());
                        if status == 204 {
                            ok += 1;
                        } else {
                            failed += 1;
                            if failed == 1 {
                                eprintln!("status {status}: {}", String::from_utf8_lossy(&resp));
                            }
                        }
                    }
                }
                (latencies, ok, failed)
            })
        })
        .collect();
    let (mut latencies, mut ok, mut failed) = (Vec::new(), 0, 0);
    for t in threads {
        let (l, o, f) = t.join().expect("client thread");
        latencies.extend(l);
        ok += o;
        failed += f;
    }
    let elapsed = start.elapsed();
    latencies.sort_unstable();
    let samples = ok * BATCH;
    let stored = server.db.head_stats().samples;
    println!(
        "ingest_http clients={clients} series={} rounds={} requests={} failed={failed} \
         samples={samples} stored={stored} elapsed={:.2}s samples/s={:.0} p50={:.2}ms p99={:.2}ms",
        chunks * BATCH,
        plan.rounds,
        latencies.len(),
        elapsed.as_secs_f64(),
        samples as f64 / elapsed.as_secs_f64(),
        percentile(&latencies, 0.50).as_secs_f64() * 1e3,
        percentile(&latencies, 0.99).as_secs_f64() * 1e3,
    );
    assert_eq!(failed, 0, "every request must be stored in full");
    assert_eq!(stored, samples, "every acknowledged sample is in the head");
    let Server { db, runtime, .. } = server;
    runtime.shutdown_timeout(Duration::from_secs(5));
    db.close().expect("close Db");
}

fn main() {
    // `cargo test --all-targets` runs this without `--bench`: a quick smoke run.
    let smoke = !std::env::args().any(|a| a == "--bench");
    let plan = if smoke {
        Plan {
            series: 4 * BATCH,
            rounds: 2,
            clients: &[2],
        }
    } else {
        Plan {
            series: 100_000,
            rounds: std::env::var("TIDEMARK_BENCH_ROUNDS")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(10),
            clients: &[4, 8],
        }
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as i64;
    // The last round lands at `now`: inside the head, not in the future.
    let t0 = now - plan.rounds as i64 * SCRAPE_MS;
    let prep = Instant::now();
    let bodies: Vec<Vec<Vec<u8>>> = (0..plan.rounds)
        .map(|r| {
            (0..plan.series / BATCH)
                .map(|c| body(c, r, t0 + r as i64 * SCRAPE_MS))
                .collect()
        })
        .collect();
    let bytes: usize = bodies.iter().flatten().map(Vec::len).sum();
    println!(
        "pre-encoded {} requests ({:.1} MiB snappy) in {:.2}s",
        bodies.iter().map(Vec::len).sum::<usize>(),
        bytes as f64 / (1 << 20) as f64,
        prep.elapsed().as_secs_f64()
    );
    let bodies = Arc::new(bodies);
    for &clients in plan.clients {
        run(&plan, clients, &bodies);
    }
}
