//! Block format macro-benchmark: writes a block of realistic series
//! (node_exporter-like: counters, wandering gauges, ~30% constants, 15 s
//! scrapes with a few ms of jitter, 120-sample XOR chunks) and prints bytes
//! per sample of index and chunks, write time, peak heap growth during the
//! write, open time and select+decode time over all series. Figures, and
//! the zstd-over-chunk-groups experiment (commit f258475) that was not
//! adopted, are recorded in `docs/format/chunks-segment.md`.
//!
//! Run: `cargo bench --bench block` (release build, 10k series x 4 h).
//! `TIDEMARK_BENCH_SERIES` and `TIDEMARK_BENCH_HOURS` scale it.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use rand::{Rng, SeedableRng};
use tidemark::model::{Labels, MatchOp, Matcher, Sample};
use tidemark::storage::block::{Block, BlockMeta, BlockWriter};
use tidemark::storage::chunk::{XorAppender, XorIter, SAMPLES_PER_CHUNK};

/// Counts live and peak heap bytes, to report the writer's memory growth.
struct Counting;
static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: delegates to the system allocator; only adds counters.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(l) };
        if !p.is_null() {
            let live = LIVE.fetch_add(l.size(), Ordering::Relaxed) + l.size();
            PEAK.fetch_max(live, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) };
        LIVE.fetch_sub(l.size(), Ordering::Relaxed);
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const SCRAPE_MS: i64 = 15_000;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn vm_hwm_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// node_exporter-like families: (metric, kind, per-host dimension label,
/// dimension values). Kinds: 0 counter (seconds, 2 decimals), 1 counter
/// (bytes, integer), 2 gauge (whole pages), 3 gauge (2 decimals), 4
/// constant. Per host: 40 counters, 11 gauges, 24 constants (32%).
const FAMILIES: &[(&str, u8, &str, usize)] = &[
    ("node_cpu_seconds_total", 0, "cpu", 16),
    ("node_network_receive_bytes_total", 1, "device", 4),
    ("node_network_transmit_bytes_total", 1, "device", 4),
    ("node_network_receive_packets_total", 1, "device", 4),
    ("node_disk_read_bytes_total", 1, "device", 4),
    ("node_disk_written_bytes_total", 1, "device", 4),
    ("node_disk_io_time_seconds_total", 0, "device", 4),
    ("node_memory_MemAvailable_bytes", 2, "", 1),
    ("node_memory_Cached_bytes", 2, "", 1),
    ("node_filesystem_avail_bytes", 2, "mountpoint", 4),
    ("node_load1", 3, "", 1),
    ("node_hwmon_temp_celsius", 3, "sensor", 4),
    ("node_filesystem_size_bytes", 4, "mountpoint", 4),
    ("node_network_up", 4, "device", 4),
    ("node_network_mtu_bytes", 4, "device", 4),
    ("node_cpu_info", 4, "cpu", 8),
    ("node_uname_info", 4, "", 1),
    ("node_boot_time_seconds", 4, "", 1),
    ("node_memory_MemTotal_bytes", 4, "", 1),
    ("up", 4, "", 1),
];

struct SeriesSpec {
    labels: Labels,
    kind: u8,
    seed: u64,
}

fn series_specs(n: usize) -> Vec<SeriesSpec> {
    let per_host: usize = FAMILIES.iter().map(|f| f.3).sum();
    let mut out = Vec::with_capacity(n);
    let mut host = 0;
    while out.len() < n {
        for &(metric, kind, dim, count) in FAMILIES {
            for d in 0..count {
                if out.len() == n {
                    break;
                }
                let mut pairs = vec![
                    ("__name__", metric.to_string()),
                    (
                        "instance",
                        format!("10.1.{}.{}:9100", host / 200, host % 200),
                    ),
                    ("job", "node".to_string()),
                ];
                if !dim.is_empty() {
                    let v = match dim {
                        "cpu" => d.to_string(),
                        "device" => ["eth0", "eth1", "sda", "nvme0n1"][d].to_string(),
                        "mountpoint" => ["/", "/boot", "/var", "/home"][d].to_string(),
                        _ => format!("temp{d}"),
                    };
                    pairs.push((dim, v));
                }
                if metric == "node_cpu_seconds_total" {
                    // One mode per cpu series keeps the per-host count fixed.
                    pairs.push(("mode", ["idle", "user", "system", "iowait"][d % 4].into()));
                }
                let seed = (host * per_host + out.len() % per_host) as u64;
                out.push(SeriesSpec {
                    labels: Labels::try_from_pairs(pairs).unwrap(),
                    kind,
                    seed,
                });
            }
        }
        host += 1;
    }
    out.sort_by(|a, b| a.labels.cmp(&b.labels));
    out
}

/// The chunks of one series as (mint, maxt, bytes), 120 samples each.
fn series_chunks(
    spec: &SeriesSpec,
    t0: i64,
    samples: usize,
    jitter: i64,
) -> Vec<(i64, i64, Vec<u8>)> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(spec.seed);
    let mut v: f64 = match spec.kind {
        0 => rng.gen_range(1e3..1e6_f64).round(),
        1 => rng.gen_range(1e6..1e12_f64).round(),
        2 => rng.gen_range(1e8..1e10_f64).round(),
        3 => rng.gen_range(20.0..80.0_f64).round(),
        _ => [1.0, 0.0, 1500.0, 1.7e9, 4.2e11][spec.seed as usize % 5],
    };
    let rate: f64 = rng.gen_range(0.0..1.0);
    let mut out = Vec::new();
    let mut app = XorAppender::new();
    let mut first = 0;
    let mut last = 0;
    for k in 0..samples {
        let t = t0 + k as i64 * SCRAPE_MS + rng.gen_range(-jitter..=jitter);
        match spec.kind {
            // CPU seconds: 15 s * utilisation, 2 decimals as node_exporter reports.
            0 => v = ((v + 15.0 * rate * rng.gen_range(0.5..1.5)) * 100.0).round() / 100.0,
            1 if rng.gen_bool(0.9) => v += (rate * rng.gen_range(0.0..2e6_f64)).round(),
            // Memory/filesystem bytes: whole 4 KiB pages, moving on half the scrapes.
            2 if rng.gen_bool(0.5) => {
                v = (v + (rng.gen_range(-256i64..256) * 4096) as f64).max(0.0)
            }
            // Load and temperatures: 2 decimals, moving on a third of the scrapes.
            3 if rng.gen_bool(0.33) => v = ((v + rng.gen_range(-0.5..0.5)) * 100.0).round() / 100.0,
            _ => {}
        }
        if app.num_samples() == 0 {
            first = t;
        }
        app.append(t, v);
        last = t;
        if app.num_samples() == SAMPLES_PER_CHUNK {
            let full = std::mem::take(&mut app);
            out.push((first, last, full.finish().into_vec()));
        }
    }
    if app.num_samples() > 0 {
        out.push((first, last, app.finish().into_vec()));
    }
    out
}

/// Writes a block with `add`, then reports its write time, peak heap
/// growth, bytes per sample, open and select + decode times.
fn write_and_read(
    what: &str,
    dir: &std::path::Path,
    t0: i64,
    samples: usize,
    total_samples: usize,
    add: impl FnOnce(&mut BlockWriter),
) -> Block {
    println!("== {what}");
    let hwm_before = vm_hwm_kib();
    let live_before = LIVE.load(Ordering::Relaxed);
    PEAK.store(live_before, Ordering::Relaxed);
    let start = Instant::now();
    let mut w = BlockWriter::create(dir).unwrap();
    add(&mut w);
    let meta = w
        .finish(BlockMeta::new(t0 - 10, t0 + samples as i64 * SCRAPE_MS))
        .unwrap();
    let write = start.elapsed();
    let peak = PEAK.load(Ordering::Relaxed) - live_before;
    let hwm_after = vm_hwm_kib();
    assert_eq!(meta.stats.num_samples as usize, total_samples);
    println!(
        "write: {write:.2?} ({:.0} samples/s); peak heap growth {:.2} MiB; VmHWM {} -> {} MiB",
        total_samples as f64 / write.as_secs_f64(),
        peak as f64 / (1 << 20) as f64,
        hwm_before >> 10,
        hwm_after >> 10
    );

    let start = Instant::now();
    let block = Block::open(dir, false).unwrap();
    let open = start.elapsed();
    let start = Instant::now();
    drop(Block::open(dir, true).unwrap());
    let open_verify = start.elapsed();
    println!("open: {open:.2?}; open with chunk verification: {open_verify:.2?}");
    println!(
        "bytes/sample: index {:.4} ({} B), chunks {:.4} ({} B), total {:.4}",
        block.index_bytes() as f64 / total_samples as f64,
        block.index_bytes(),
        block.chunk_bytes() as f64 / total_samples as f64,
        block.chunk_bytes(),
        block.size_bytes() as f64 / total_samples as f64
    );

    let all = [Matcher::new(MatchOp::Regex, "__name__", ".+").unwrap()];
    let start = Instant::now();
    let sel = block.select(&all, i64::MIN, i64::MAX).unwrap();
    let selected = start.elapsed();
    let mut decoded = 0;
    let mut sum = 0.0;
    for s in &sel {
        for c in &s.chunks {
            let got = c.samples().unwrap();
            decoded += got.len();
            sum += got.iter().map(|s| s.v).sum::<f64>();
        }
    }
    std::hint::black_box(sum);
    let total = start.elapsed();
    assert_eq!(decoded, total_samples);
    println!(
        "select all series: {selected:.2?}; select + decode: {total:.2?} ({:.1} ns/sample)",
        total.as_nanos() as f64 / total_samples as f64
    );
    block
}

fn main() {
    // `cargo test --all-targets` runs this without `--bench`: a quick smoke run.
    let smoke = !std::env::args().any(|a| a == "--bench");
    let n_series = env("TIDEMARK_BENCH_SERIES", if smoke { 300 } else { 10_000 });
    let hours = env("TIDEMARK_BENCH_HOURS", if smoke { 1 } else { 4 });
    let samples = hours * 3600 / 15;
    let jitter = env("TIDEMARK_BENCH_JITTER_MS", 5) as i64;
    let t0 = 1_700_000_000_000i64;
    println!(
        "block bench: {n_series} series x {hours} h at 15 s ({samples} samples each), timestamp jitter +-{jitter} ms"
    );

    let specs = series_specs(n_series);
    let gen_start = Instant::now();
    let data: Vec<Vec<(i64, i64, Vec<u8>)>> = specs
        .iter()
        .map(|s| series_chunks(s, t0, samples, jitter))
        .collect();
    let total_samples: usize = n_series * samples;
    println!("generate: {:.2?}", gen_start.elapsed());
    for (kind, name) in [
        "counter s",
        "counter B",
        "gauge B",
        "gauge 0.01",
        "constant",
    ]
    .iter()
    .enumerate()
    {
        let (mut series, mut bytes) = (0, 0);
        for (spec, chunks) in specs.iter().zip(&data) {
            if usize::from(spec.kind) == kind {
                series += 1;
                bytes += chunks.iter().map(|c| c.2.len()).sum::<usize>();
            }
        }
        println!(
            "  {name}: {series} series, XOR {:.3} bytes/sample",
            bytes as f64 / (series * samples).max(1) as f64
        );
    }

    let tmp = tempfile::tempdir().unwrap();
    // The head's XOR chunks as they are, then the same samples the way
    // blocks store them (packed, timestamps shared within a target).
    write_and_read(
        "XOR chunks as written by the head",
        &tmp.path().join("xor"),
        t0,
        samples,
        total_samples,
        |w| {
            for (spec, chunks) in specs.iter().zip(&data) {
                let list: Vec<(i64, i64, &[u8])> = chunks
                    .iter()
                    .map(|(a, b, c)| (*a, *b, c.as_slice()))
                    .collect();
                w.add_series(&spec.labels, &list).unwrap();
            }
        },
    );
    let block = write_and_read(
        "packed block chunks",
        &tmp.path().join("packed"),
        t0,
        samples,
        total_samples,
        |w| {
            for (spec, chunks) in specs.iter().zip(&data) {
                let all: Vec<Sample> = chunks.iter().flat_map(|c| XorIter::new(&c.2[..])).collect();
                w.add_sample_series(&spec.labels, &all).unwrap();
            }
        },
    );
    let one = [
        Matcher::eq("instance", "10.1.0.7:9100"),
        Matcher::eq("__name__", "node_load1"),
    ];
    let start = Instant::now();
    let rounds = 1000;
    for _ in 0..rounds {
        std::hint::black_box(block.select(&one, t0, t0 + 3_600_000).unwrap());
    }
    println!(
        "select one series (2 = matchers): {:.1?} per query",
        start.elapsed() / rounds
    );
}
