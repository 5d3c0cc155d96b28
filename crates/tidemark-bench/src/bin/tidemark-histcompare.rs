//! `tidemark-histcompare`: native histograms, Tidemark against Debian's
//! Prometheus (2.42, `--enable-feature=native-histograms`) in one run, on
//! the same remote-written data: N latency histograms (schema 3, counters,
//! ~20 populated buckets) over an hour at a 15 s step, ending now.
//!
//! Prints, per system: server CPU per histogram sample ingested, bytes per
//! histogram sample after persisting (admin snapshot: head as a block), and
//! the median latency of `histogram_quantile`/`histogram_count` range
//! queries over the hour (15 s step), plus whether Tidemark's
//! `histogram_count` answers equal Prometheus's.
//!
//! `cargo run --release -p tidemark-bench --bin tidemark-histcompare --
//! --tidemark-bin target/release/tidemark`

use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use clap::Parser;
use prost::Message;
use tidemark_bench::compare::systems::System;
use tidemark_bench::http::{encode_component, Client};
use tidemark_bench::process::{free_port, Server};
use tidemark_proto::prometheus as pb;

#[derive(Parser, Debug)]
#[command(about = "Native histograms: Tidemark vs Prometheus, one run")]
struct Args {
    /// The tidemark binary.
    #[arg(long, default_value = "target/release/tidemark")]
    tidemark_bin: String,
    /// The prometheus binary (2.40 or later).
    #[arg(long, default_value = "/usr/bin/prometheus")]
    prometheus_bin: String,
    /// Histogram series.
    #[arg(long, default_value_t = 1000)]
    series: usize,
    /// Samples per series (15 s apart; 240 = one hour).
    #[arg(long, default_value_t = 240)]
    samples: usize,
    /// Runs of each query (the median is reported).
    #[arg(long, default_value_t = 7)]
    runs: usize,
}

const STEP_MS: i64 = 15_000;
const SERIES_PER_REQUEST: usize = 25;
const QUERIES: [&str; 3] = [
    "histogram_quantile(0.9, rate(request_duration_seconds[5m]))",
    "histogram_quantile(0.9, sum by (job) (rate(request_duration_seconds[5m])))",
    "histogram_count(rate(request_duration_seconds[5m]))",
];

/// A deterministic generator (SplitMix64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// One series' histograms: each scrape adds ~100 log-normal observations
/// (schema 3: bucket index = ceil(log2(v) * 8)).
fn series_histograms(seed: u64, samples: usize, end_ms: i64) -> Vec<pb::Histogram> {
    let mut rng = Rng(seed);
    let mut counts = std::collections::BTreeMap::<i32, u64>::new();
    let (mut count, mut sum) = (0u64, 0.0f64);
    let start = end_ms - (samples as i64 - 1) * STEP_MS;
    (0..samples)
        .map(|k| {
            for _ in 0..100 {
                // Box-Muller: a log-normal latency around 50 ms.
                let (u1, u2) = (rng.next().max(1e-12), rng.next());
                let n = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
                let v = (0.05f64.ln() + 0.6 * n).exp();
                let idx = (v.log2() * 8.0).ceil() as i32;
                *counts.entry(idx).or_default() += 1;
                count += 1;
                sum += v;
            }
            // Spans over the populated indexes, deltas of the counts.
            let mut spans: Vec<pb::BucketSpan> = Vec::new();
            let mut deltas = Vec::new();
            let (mut prev_idx, mut prev_count): (Option<i32>, i64) = (None, 0);
            for (&idx, &c) in &counts {
                match prev_idx {
                    Some(p) if idx == p + 1 => spans.last_mut().expect("a span").length += 1,
                    Some(p) => spans.push(pb::BucketSpan {
                        offset: idx - p - 1,
                        length: 1,
                    }),
                    None => spans.push(pb::BucketSpan {
                        offset: idx,
                        length: 1,
                    }),
                }
                deltas.push(c as i64 - prev_count);
                prev_count = c as i64;
                prev_idx = Some(idx);
            }
            pb::Histogram {
                count: Some(pb::histogram::Count::CountInt(count)),
                sum,
                schema: 3,
                zero_threshold: 1e-128,
                zero_count: Some(pb::histogram::ZeroCount::ZeroCountInt(0)),
                positive_spans: spans,
                positive_deltas: deltas,
                timestamp: start + k as i64 * STEP_MS,
                ..Default::default()
            }
        })
        .collect()
}

fn label(n: &str, v: &str) -> pb::Label {
    pb::Label {
        name: n.as_bytes().to_vec().into(),
        value: v.as_bytes().to_vec().into(),
    }
}

/// Remote-write request bodies (snappy), `SERIES_PER_REQUEST` series each.
fn bodies(args: &Args, end_ms: i64) -> Vec<Vec<u8>> {
    (0..args.series)
        .collect::<Vec<_>>()
        .chunks(SERIES_PER_REQUEST)
        .map(|chunk| {
            let req = pb::WriteRequest {
                timeseries: chunk
                    .iter()
                    .map(|&i| pb::TimeSeries {
                        labels: vec![
                            label("__name__", "request_duration_seconds"),
                            label("instance", &format!("host-{i}:9100")),
                            label("job", &format!("job-{}", i % 10)),
                        ],
                        histograms: series_histograms(i as u64 + 1, args.samples, end_ms),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            };
            snap::raw::Encoder::new()
                .compress_vec(&req.encode_to_vec())
                .expect("snappy")
        })
        .collect()
}

struct Figures {
    cpu_per_sample_us: f64,
    bytes_per_sample: f64,
    medians_ms: Vec<f64>,
    counts: String,
}

fn measure(
    system: System,
    bin: &str,
    bodies: &[Vec<u8>],
    args: &Args,
    end_ms: i64,
) -> Result<Figures> {
    let dir = tempfile::tempdir()?;
    let addr = format!("127.0.0.1:{}", free_port());
    let mut cmd = system.command(bin, &addr, dir.path());
    if system == System::Prometheus {
        cmd.arg("--enable-feature=native-histograms");
    }
    let mut server = Server::spawn(system.title(), cmd, &addr, None)?;
    server.wait_ready(system.ready_path(), Duration::from_secs(60))?;
    let mut client = Client::new(server.url(), Duration::from_secs(120));
    let cpu0 = server.stat().context("no /proc stat")?.cpu_seconds;
    for body in bodies {
        let r = client.request(
            "POST",
            system.write_path(),
            &[
                ("Content-Type", "application/x-protobuf"),
                ("Content-Encoding", "snappy"),
                ("X-Prometheus-Remote-Write-Version", "0.1.0"),
            ],
            body,
        )?;
        if !(200..300).contains(&r.status) {
            bail!(
                "{}: remote write answered {}: {}",
                system.title(),
                r.status,
                r.text()
            );
        }
    }
    let samples = (args.series * args.samples) as f64;
    let cpu = server.stat().context("no /proc stat")?.cpu_seconds - cpu0;
    let persisted = system
        .persist(&server, dir.path())
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let (start_s, end_s) = (
        (end_ms - (args.samples as i64 - 1) * STEP_MS) as f64 / 1000.0,
        end_ms as f64 / 1000.0,
    );
    let mut medians = Vec::new();
    let mut counts = String::new();
    for (qi, q) in QUERIES.iter().enumerate() {
        let path = format!(
            "/api/v1/query_range?query={}&start={start_s}&end={end_s}&step=15",
            encode_component(q)
        );
        let mut times = Vec::new();
        for _ in 0..args.runs {
            let t = Instant::now();
            let r = client.get(&path)?;
            times.push(t.elapsed().as_secs_f64() * 1000.0);
            if r.status != 200 {
                bail!("{}: {q}: {} {}", system.title(), r.status, r.text());
            }
            if qi == 2 {
                counts = r.text();
            }
        }
        times.sort_by(f64::total_cmp);
        medians.push(times[times.len() / 2]);
    }
    let _ = server.terminate(Duration::from_secs(30));
    Ok(Figures {
        cpu_per_sample_us: cpu / samples * 1e6,
        bytes_per_sample: (persisted.index_bytes + persisted.chunk_bytes) as f64 / samples,
        medians_ms: medians,
        counts,
    })
}

/// `histogram_count` answers as labels → points, sorted.
fn series_points(body: &str) -> Vec<(String, Vec<(f64, f64)>)> {
    let v: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
    let mut out: Vec<(String, Vec<(f64, f64)>)> = v["data"]["result"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|s| {
                    let points = s["values"]
                        .as_array()
                        .map(|p| {
                            p.iter()
                                .map(|p| {
                                    (
                                        p[0].as_f64().unwrap_or(f64::NAN),
                                        p[1].as_str()
                                            .and_then(|v| v.parse().ok())
                                            .unwrap_or(f64::NAN),
                                    )
                                })
                                .collect()
                        })
                        .unwrap_or_default();
                    (s["metric"].to_string(), points)
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Equal series, timestamps, and values within 1e-9 relative (the last
/// bit of a rate differs with the order of float operations).
fn answers_equal(a: &str, b: &str) -> bool {
    let (a, b) = (series_points(a), series_points(b));
    !a.is_empty()
        && a.len() == b.len()
        && a.iter().zip(&b).all(|((la, pa), (lb, pb))| {
            la == lb
                && pa.len() == pb.len()
                && pa.iter().zip(pb).all(|(x, y)| {
                    x.0 == y.0 && (x.1 - y.1).abs() <= 1e-9 * x.1.abs().max(y.1.abs())
                })
        })
}

fn main() -> Result<()> {
    let args = Args::parse();
    let end_ms =
        SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis() as i64 / STEP_MS * STEP_MS;
    let bodies = bodies(&args, end_ms);
    eprintln!(
        "{} histogram series x {} samples ({} requests)",
        args.series,
        args.samples,
        bodies.len()
    );
    let prom = measure(
        System::Prometheus,
        &args.prometheus_bin,
        &bodies,
        &args,
        end_ms,
    )?;
    let tm = measure(System::Tidemark, &args.tidemark_bin, &bodies, &args, end_ms)?;
    let version = System::Prometheus.version(&args.prometheus_bin);
    println!(
        "{} native histogram series x {} samples (schema 3, 15 s step), remote write 1.0\n",
        args.series, args.samples
    );
    println!("| figure | Prometheus ({version}) | Tidemark | Tidemark / Prometheus |");
    println!("| --- | --- | --- | --- |");
    let row = |name: &str, p: f64, t: f64, unit: &str| {
        println!("| {name} | {p:.2} {unit} | {t:.2} {unit} | {:.2}x |", t / p);
    };
    row(
        "ingest CPU per histogram sample",
        prom.cpu_per_sample_us,
        tm.cpu_per_sample_us,
        "us",
    );
    row(
        "bytes per histogram sample (snapshot: index + chunks)",
        prom.bytes_per_sample,
        tm.bytes_per_sample,
        "B",
    );
    for (i, q) in QUERIES.iter().enumerate() {
        row(
            &format!("`{q}` over 1 h, median"),
            prom.medians_ms[i],
            tm.medians_ms[i],
            "ms",
        );
    }
    let equal = answers_equal(&prom.counts, &tm.counts);
    println!(
        "\n`histogram_count(rate(...))` answers equal to Prometheus's (1e-9 relative): {}",
        if equal { "yes" } else { "NO" }
    );
    if !equal {
        let out = PathBuf::from("/tmp/histcompare-counts");
        std::fs::create_dir_all(&out)?;
        std::fs::write(out.join("prometheus.json"), &prom.counts)?;
        std::fs::write(out.join("tidemark.json"), &tm.counts)?;
    }
    Ok(())
}
