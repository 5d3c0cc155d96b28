//! PromQL engine benchmark (in process, no HTTP): range queries over 10k
//! series x 1 h at a 15 s step, data in the real head.
//!
//! Run: `cargo bench --bench promql`. Under `cargo test --all-targets`
//! (no `--bench` argument) it runs a small smoke version.

use std::time::Instant;

use tidemark::model::{Labels, Sample};
use tidemark::promql::Engine;
use tidemark::storage::wal::{FsyncPolicy, WalOptions};
use tidemark::storage::{Db, Options, SeriesSamples};

const STEP_MS: i64 = 15_000;

fn main() {
    let smoke = !std::env::args().any(|a| a == "--bench");
    let (instances, runs) = if smoke { (20usize, 1usize) } else { (1000, 7) };
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(
        dir.path(),
        Options {
            wal: WalOptions {
                fsync: FsyncPolicy::Never,
                ..Default::default()
            },
            ..Default::default()
        },
    )
    .unwrap();
    // 10 series per instance for each metric: 10 jobs' counters, 10 buckets.
    let les = [
        "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "+Inf",
    ];
    let mut series: Vec<Labels> = Vec::new();
    for i in 0..instances {
        for k in 0..10 {
            series.push(
                Labels::try_from_pairs([
                    ("__name__", "http_requests_total".to_string()),
                    ("job", format!("job{}", i % 10)),
                    ("instance", format!("i{i}")),
                    ("code", format!("{}", 200 + k)),
                ])
                .unwrap(),
            );
        }
        for le in les {
            series.push(
                Labels::try_from_pairs([
                    ("__name__", "request_duration_seconds_bucket".to_string()),
                    ("job", format!("job{}", i % 10)),
                    ("instance", format!("i{i}")),
                    ("le", le.to_string()),
                ])
                .unwrap(),
            );
        }
    }
    let points = 65 * 60 * 1000 / STEP_MS + 1; // 1 h plus the 5 m window
    let t0 = 1_700_000_000_000i64;
    let started = Instant::now();
    for p in 0..points {
        let batch: Vec<SeriesSamples> = series
            .iter()
            .enumerate()
            .map(|(n, l)| {
                let bucket = (n % 20) as f64;
                let v = if n % 20 < 10 {
                    (p * (n as i64 % 7 + 1)) as f64
                } else {
                    (p as f64) * (bucket - 9.0) * 3.0
                };
                SeriesSamples {
                    created: Vec::new(),
                    histograms: Vec::new(),
                    labels: l.clone(),
                    samples: vec![Sample::new(t0 + p * STEP_MS, v)],
                }
            })
            .collect();
        db.append(&batch).unwrap();
    }
    println!(
        "loaded {} series x {points} samples in {:.1}s",
        series.len(),
        started.elapsed().as_secs_f64()
    );
    let engine = Engine::default();
    let (start, end) = (t0 + 5 * 60 * 1000, t0 + (points - 1) * STEP_MS);
    for q in [
        "sum by (job) (rate(http_requests_total[5m]))",
        "histogram_quantile(0.9, sum by (le, job) (rate(request_duration_seconds_bucket[5m])))",
    ] {
        let mut times = Vec::new();
        let mut n = 0;
        for _ in 0..runs {
            let t = Instant::now();
            let r = engine.range_query(&db, q, start, end, STEP_MS).unwrap();
            times.push(t.elapsed().as_secs_f64() * 1000.0);
            if let tidemark::promql::Value::Matrix(m) = r.value {
                n = m.len();
            }
        }
        times.sort_by(f64::total_cmp);
        println!(
            "{q}: median {:.1} ms over {runs} runs ({n} result series, {} input series)",
            times[times.len() / 2],
            series.len() / 2
        );
    }
}
