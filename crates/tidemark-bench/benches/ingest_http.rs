//! End-to-end remote-write ingest over HTTP on loopback: the real router
//! (`tidemark::api::router`) served by axum in-process on 127.0.0.1:0, a
//! `Db` on a temp dir with the default fsync=batch, and N concurrent clients
//! (the loadgen's keep-alive HTTP/1.1 client) POSTing pre-encoded 1.0
//! requests of 2,000 samples each. 100k series of the loadgen's
//! node_exporter workload are cycled in 2,000-series requests; every round
//! is one scrape, 15 s later. Each
//! client owns a fixed share of the series, so samples stay in order per
//! series. Prints samples/s and p50/p99 request latency per client count.
//!
//! Run: `cargo bench --bench ingest_http`. Without `--bench` (as under
//! `cargo test --all-targets`) it runs a smoke version of a few requests.
//! `TIDEMARK_BENCH_ROUNDS` (default 10) sets the rounds per client count.
//! Every run stops after [`MAX_RUN`] whatever the round count.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tidemark::api::{router, AppState};
use tidemark::ingest::{Receiver, ReceiverOptions};
use tidemark::storage::{Db, Options};
use tidemark_bench::encode::{Encoder, Protocol};
use tidemark_bench::http::{Client, Url};
use tidemark_bench::send::percentile;
use tidemark_bench::workload::{Spec, Workload};

/// Samples (= series) per request: Prometheus's default `max_samples_per_send`.
const BATCH: usize = 2000;
/// Prometheus's default scrape interval.
const SCRAPE_MS: i64 = 15_000;
/// Upper bound on one run's duration, whatever the round count.
const MAX_RUN: Duration = Duration::from_secs(120);
/// Headers of a remote write 1.0 request.
const HEADERS: [(&str, &str); 3] = [
    ("Content-Type", "application/x-protobuf"),
    ("Content-Encoding", "snappy"),
    ("X-Prometheus-Remote-Write-Version", "0.1.0"),
];
/// Socket time-out for every read and write.
const IO_TIMEOUT: Duration = Duration::from_secs(30);

/// One benchmark configuration.
struct Plan {
    series: usize,
    rounds: usize,
    clients: &'static [usize],
}

/// Every request body, round by round: the loadgen's node_exporter
/// workload (`series / 500` targets of 500 series), one shard, so each
/// round is `series / BATCH` requests holding the same series each round.
fn bodies(plan: &Plan, end_ms: i64) -> Vec<Vec<Vec<u8>>> {
    let spec = Spec {
        targets: plan.series / 500,
        series_per_target: 500,
        scrapes: plan.rounds,
        interval_ms: SCRAPE_MS,
        jitter_ms: 5,
        end_ms,
        shards: 1,
        max_samples_per_send: BATCH,
        seed: 1,
    };
    let wl = Workload::generate(spec);
    let encoder = Encoder::new(Protocol::V1, &wl.series);
    let all: Vec<Vec<u8>> = wl
        .shard(0)
        .map(|b| encoder.encode(&b).bytes.to_vec())
        .collect();
    all.chunks(plan.series / BATCH).map(<[_]>::to_vec).collect()
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
                let url = Url::parse(&format!("http://{addr}/api/v1/write")).expect("loopback URL");
                let mut client = Client::new(&url, IO_TIMEOUT);
                let (mut latencies, mut ok, mut failed) = (Vec::new(), 0usize, 0usize);
                'rounds: for round in &*bodies {
                    for body in round.iter().skip(c).step_by(clients) {
                        if start.elapsed() > MAX_RUN {
                            break 'rounds;
                        }
                        let t0 = Instant::now();
                        let r = client
                            .request("POST", &url.path, &HEADERS, body)
                            .expect("POST /api/v1/write");
                        let (status, resp) = (r.status, r.body);
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
    let prep = Instant::now();
    // The last round lands before `now`: inside the head, not in the future.
    let bodies = bodies(&plan, now);
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
