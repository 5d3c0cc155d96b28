//! Head and WAL macro-benchmark: append throughput for 100k series on 1 and
//! 2 threads with fsync=batch and none, bytes per sample of head chunks on a
//! realistic mix, RSS per active series, and WAL replay speed; then, for
//! 10k series x 4 h at 15 s (a few ms of per-target timestamp jitter), the
//! persisted block's bytes per sample (index and chunks apart), the time to
//! write it, range-query time over the head vs over the block, and clean
//! restart time with and without the head snapshot.
//!
//! Run: `cargo bench --bench head` (release build; prints one line per figure).
//! `TIDEMARK_BENCH_SERIES` and `TIDEMARK_BENCH_ROUNDS` scale it down.

use std::time::Instant;

use rand::{Rng, SeedableRng};
use tidemark::model::{Labels, Sample};
use tidemark::storage::wal::{FsyncPolicy, WalOptions};
use tidemark::storage::{Db, Options, SeriesSamples};

const BATCH: usize = 2000; // Prometheus's default max_samples_per_send
const SCRAPE_MS: i64 = 15_000;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn labels(i: usize) -> Labels {
    let metric = [
        "http_requests_total",
        "node_cpu_seconds_total",
        "process_resident_memory_bytes",
        "up",
        "go_goroutines",
    ][i % 5];
    Labels::try_from_pairs([
        ("__name__", metric.to_string()),
        (
            "instance",
            format!("10.0.{}.{}:9100", (i / 250) % 256, i % 250),
        ),
        ("job", format!("job-{}", i % 20)),
        ("series", i.to_string()),
    ])
    .unwrap()
}

/// Realistic value streams: counters, gauges, constants by series index.
struct Values {
    rng: rand::rngs::StdRng,
    state: Vec<f64>,
}

impl Values {
    fn new(n: usize) -> Self {
        Self {
            rng: rand::rngs::StdRng::seed_from_u64(7),
            state: vec![0.0; n],
        }
    }
    fn next(&mut self, i: usize) -> f64 {
        let v = &mut self.state[i];
        match i % 3 {
            0 => *v += self.rng.gen_range(0..50) as f64, // counter
            1 => *v = ((*v + self.rng.gen_range(-5.0..5.0)) * 100.0).round() / 100.0, // gauge, 2 decimals
            _ => *v = 1.0,                                                            // constant
        }
        *v
    }
}

fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

fn options(fsync: FsyncPolicy) -> Options {
    Options {
        wal: WalOptions {
            fsync,
            ..WalOptions::default()
        },
        // Replay figures measure the WAL, not the head snapshot.
        head_snapshot_on_close: false,
        retention_ms: 0,
        ..Options::default()
    }
}

fn dir_bytes(p: &std::path::Path) -> u64 {
    match std::fs::metadata(p) {
        Ok(m) if m.is_dir() => std::fs::read_dir(p)
            .map(|rd| rd.flatten().map(|e| dir_bytes(&e.path())).sum())
            .unwrap_or(0),
        Ok(m) => m.len(),
        Err(_) => 0,
    }
}

/// Selects every series over `[mint, maxt]` and decodes every sample;
/// returns (samples, seconds).
fn read_all(db: &Db, mint: i64, maxt: i64) -> (usize, f64) {
    let t = Instant::now();
    let n: usize = db
        .querier(mint, maxt)
        .select(&[])
        .iter()
        .map(|s| s.samples().count())
        .sum();
    (n, t.elapsed().as_secs_f64())
}

/// Block figures: 4 h of data, the first 2 h persisted as a block.
fn blocks_section(n: usize) {
    const HOUR: i64 = 3_600_000;
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), options(FsyncPolicy::Never)).unwrap();
    let mut values = Values::new(n);
    let mut jitter = rand::rngs::StdRng::seed_from_u64(11);
    let rounds = (4 * HOUR / SCRAPE_MS) as usize;
    for r in 0..rounds {
        // One timestamp per target (100 series), 0-10 ms late, as scrapes are.
        let offsets: Vec<i64> = (0..n.div_ceil(100))
            .map(|_| jitter.gen_range(0..=10))
            .collect();
        for chunk in (0..n).collect::<Vec<_>>().chunks(BATCH) {
            let batch: Vec<SeriesSamples> = chunk
                .iter()
                .map(|&i| SeriesSamples {
                    created: Vec::new(),
                    histograms: Vec::new(),
                    labels: labels(i),
                    samples: vec![Sample::new(
                        r as i64 * SCRAPE_MS + offsets[i / 100],
                        values.next(i),
                    )],
                })
                .collect();
            db.append(&batch).unwrap();
        }
    }
    let (samples, head_s) = read_all(&db, 0, 2 * HOUR - 1);
    let t = Instant::now();
    let report = db.compact().unwrap();
    let write_s = t.elapsed().as_secs_f64();
    assert_eq!(report.head_blocks, 1, "{report:?}");
    let meta = &db.blocks()[0];
    let bdir = dir.path().join(&meta.ulid);
    let index = dir_bytes(&bdir.join("index"));
    let chunks = dir_bytes(&bdir.join("chunks"));
    let per = meta.stats.num_samples as f64;
    println!(
        "block: {n} series x 2 h at 15 s (0-10 ms jitter): {} samples, index {:.3} + chunks {:.3} = {:.3} bytes/sample; written (head -> block, truncate, WAL checkpoint) in {:.3}s",
        meta.stats.num_samples,
        index as f64 / per,
        chunks as f64 / per,
        (index + chunks) as f64 / per,
        write_s
    );
    let (samples_b, block_s) = read_all(&db, 0, 2 * HOUR - 1);
    assert_eq!(samples, samples_b);
    println!(
        "range read (select all + decode, 2 h, {samples} samples): head {:.1} ms, block {:.1} ms (block/head {:.2})",
        head_s * 1e3,
        block_s * 1e3,
        block_s / head_s
    );
    // Clean restart with the head snapshot, then with WAL replay only.
    let with_snapshot = Options {
        head_snapshot_on_close: true,
        ..options(FsyncPolicy::Never)
    };
    drop(db);
    let db = Db::open(dir.path(), with_snapshot.clone()).unwrap();
    db.close().unwrap();
    drop(db);
    let t = Instant::now();
    let db = Db::open(dir.path(), options(FsyncPolicy::Never)).unwrap();
    let snap_s = t.elapsed().as_secs_f64();
    assert!(db.open_report().head_snapshot_loaded);
    db.close().unwrap();
    drop(db);
    let t = Instant::now();
    let db = Db::open(dir.path(), options(FsyncPolicy::Never)).unwrap();
    let wal_s = t.elapsed().as_secs_f64();
    assert!(!db.open_report().head_snapshot_loaded);
    println!(
        "clean restart ({} head samples): head snapshot {:.3}s, WAL replay {:.3}s (snapshot/WAL {:.2})",
        db.head_stats().samples,
        snap_s,
        wal_s,
        snap_s / wal_s
    );
}

/// Appends `rounds` scrapes of `series` series from `threads` threads;
/// returns samples/s over the rounds after the first (series creation).
fn append_run(db: &Db, series: usize, rounds: usize, threads: usize) -> (f64, f64) {
    let all_labels: Vec<Labels> = (0..series).map(labels).collect();
    let per = series.div_ceil(threads);
    let run_rounds = |from: usize, to: usize| {
        std::thread::scope(|sc| {
            for th in 0..threads {
                let lbls = &all_labels[(th * per).min(series)..((th + 1) * per).min(series)];
                sc.spawn(move || {
                    let mut values = Values::new(lbls.len());
                    for r in from..to {
                        for (c, chunk) in lbls.chunks(BATCH).enumerate() {
                            let batch: Vec<SeriesSamples> = chunk
                                .iter()
                                .enumerate()
                                .map(|(k, l)| SeriesSamples {
                                    created: Vec::new(),
                                    histograms: Vec::new(),
                                    labels: l.clone(),
                                    samples: vec![Sample::new(
                                        r as i64 * SCRAPE_MS,
                                        values.next(c * BATCH + k),
                                    )],
                                })
                                .collect();
                            let out = db.append(&batch).unwrap();
                            assert!(out.is_complete());
                        }
                    }
                });
            }
        })
    };
    let t0 = Instant::now();
    run_rounds(0, 1);
    let create = series as f64 / t0.elapsed().as_secs_f64();
    let t1 = Instant::now();
    run_rounds(1, rounds);
    let steady = (series * (rounds - 1)) as f64 / t1.elapsed().as_secs_f64();
    (create, steady)
}

fn main() {
    // `cargo test --all-targets` runs this without `--bench`: a quick smoke run.
    let smoke = !std::env::args().any(|a| a == "--bench");
    let series = env("TIDEMARK_BENCH_SERIES", if smoke { 3_000 } else { 100_000 });
    let rounds = env("TIDEMARK_BENCH_ROUNDS", if smoke { 3 } else { 20 });
    println!("head bench: {series} series, {rounds} scrapes each, batches of {BATCH}");

    // RSS first, in a fresh process heap.
    {
        let dir = tempfile::tempdir().unwrap();
        let before = rss_bytes();
        let db = Db::open(dir.path(), options(FsyncPolicy::Never)).unwrap();
        append_run(&db, series, 4, 1);
        let after = rss_bytes();
        println!(
            "rss_per_series: {:.0} bytes ({} series, 4 samples each; RSS {} -> {} MiB)",
            (after.saturating_sub(before)) as f64 / series as f64,
            series,
            before >> 20,
            after >> 20
        );
    }

    for (fsync, name) in [(FsyncPolicy::Never, "none"), (FsyncPolicy::Batch, "batch")] {
        for threads in [1, 2] {
            let dir = tempfile::tempdir().unwrap();
            let db = Db::open(dir.path(), options(fsync)).unwrap();
            let (create, steady) = append_run(&db, series, rounds, threads);
            println!("append fsync={name} threads={threads}: {steady:.0} samples/s steady, {create:.0} series/s on creation");
            if fsync == FsyncPolicy::Batch && threads == 2 {
                let stats = db.head_stats();
                println!(
                    "head: {} samples in {} chunks, {:.3} bytes/sample (partly filled chunks)",
                    stats.samples,
                    stats.chunks,
                    stats.chunk_bytes as f64 / stats.samples as f64
                );
                db.close().unwrap();
                drop(db);
                let t = Instant::now();
                let db = Db::open(dir.path(), options(fsync)).unwrap();
                let r = db.open_report();
                println!(
                    "replay: {} samples, {} series in {:.2}s = {:.0} samples/s ({} WAL bytes)",
                    r.head.samples,
                    r.head.series,
                    t.elapsed().as_secs_f64(),
                    r.head.samples as f64 / t.elapsed().as_secs_f64(),
                    r.wal.bytes
                );
            }
        }
    }

    blocks_section(if smoke { 300 } else { 10_000 });

    // Bytes per sample with full chunks: 10k series x 240 samples.
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), options(FsyncPolicy::Never)).unwrap();
    let n = if smoke { 500 } else { 10_000usize };
    let mut values = Values::new(n);
    for r in 0..240 {
        let batch: Vec<SeriesSamples> = (0..n)
            .map(|i| SeriesSamples {
                created: Vec::new(),
                histograms: Vec::new(),
                labels: labels(i),
                samples: vec![Sample::new(r * SCRAPE_MS, values.next(i))],
            })
            .collect();
        db.append(&batch).unwrap();
    }
    let st = db.head_stats();
    println!(
        "bytes_per_sample: {:.3} (10k series x 240 samples at 15 s; 1/3 counters, 1/3 gauges, 1/3 constants; {} chunks)",
        st.chunk_bytes as f64 / st.samples as f64,
        st.chunks
    );
}
