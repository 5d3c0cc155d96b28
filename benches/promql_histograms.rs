//! PromQL over native histograms (in process, no HTTP): 1,000 histogram
//! series x 1 h at a 15 s step in the real head (schema 3, ~20 populated
//! buckets each, counters), then `histogram_quantile` and friends as range
//! queries over the hour — the issue's "histogram_quantile latency over
//! 1 h of 1,000 histogram series" figure.
//!
//! Run: `cargo bench --bench promql_histograms`. Under
//! `cargo test --all-targets` (no `--bench` argument) it runs a small smoke
//! version.

use std::time::Instant;

use tidemark::model::{FloatHistogram, HistogramSample, HistogramValue, Labels};
use tidemark::promql::Engine;
use tidemark::storage::wal::{FsyncPolicy, WalOptions};
use tidemark::storage::{Db, Options, SeriesSamples};

const STEP_MS: i64 = 15_000;

/// A counter histogram after `p` scrapes: bucket `k` of 20 (from index
/// 8, i.e. values around 2..11 at schema 3) grows by `k % 5 + 1` per scrape.
fn histogram(p: i64, n: usize) -> FloatHistogram {
    let pairs: Vec<(i32, f64)> = (0..20)
        .map(|k| (8 + k as i32, (p * ((k + n) as i64 % 5 + 1)) as f64))
        .collect();
    let count: f64 = pairs.iter().map(|x| x.1).sum();
    let mut h = FloatHistogram {
        schema: 3,
        zero_threshold: 1e-128,
        count,
        sum: count * 4.0,
        ..Default::default()
    };
    h.set_positive(&pairs);
    h
}

fn main() {
    let smoke = !std::env::args().any(|a| a == "--bench");
    let (instances, runs) = if smoke { (10usize, 1usize) } else { (1000, 7) };
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
    let series: Vec<Labels> = (0..instances)
        .map(|i| {
            Labels::try_from_pairs([
                ("__name__", "request_duration_seconds".to_string()),
                ("job", format!("job{}", i % 10)),
                ("instance", format!("i{i}")),
            ])
            .unwrap()
        })
        .collect();
    let points = 65 * 60 * 1000 / STEP_MS + 1; // 1 h plus the 5 m window
    let t0 = 1_700_000_000_000i64;
    let started = Instant::now();
    for p in 0..points {
        let batch: Vec<SeriesSamples> = series
            .iter()
            .enumerate()
            .map(|(n, l)| SeriesSamples {
                created: Vec::new(),
                labels: l.clone(),
                samples: Vec::new(),
                histograms: vec![HistogramSample {
                    t: t0 + p * STEP_MS,
                    h: HistogramValue::Float(histogram(p, n)),
                }],
            })
            .collect();
        let out = db.append(&batch).unwrap();
        assert!(out.rejected.is_empty(), "{:?}", out.rejected.first());
    }
    println!(
        "loaded {} histogram series x {points} samples in {:.1}s",
        series.len(),
        started.elapsed().as_secs_f64()
    );
    let engine = Engine::default();
    let (start, end) = (t0 + 5 * 60 * 1000, t0 + (points - 1) * STEP_MS);
    for q in [
        "histogram_quantile(0.9, rate(request_duration_seconds[5m]))",
        "histogram_quantile(0.9, sum by (job) (rate(request_duration_seconds[5m])))",
        "histogram_count(rate(request_duration_seconds[5m]))",
        "histogram_quantile(0.9, request_duration_seconds)",
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
        assert!(n > 0, "{q} returned nothing");
        times.sort_by(f64::total_cmp);
        println!(
            "{q}: median {:.1} ms over {runs} runs ({n} result series, {} input series)",
            times[times.len() / 2],
            series.len()
        );
    }
}
