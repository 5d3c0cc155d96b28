//! Crash safety: a child process appends continuously (fsync=batch) and
//! prints each acknowledged batch; the parent `kill -9`s it at random
//! moments, reopens the store and checks that every acknowledged batch is
//! there, whole, and that the store opens cleanly every time. Each batch
//! also carries a native histogram sample (WAL record 7), which must
//! survive the same way.
//!
//! The child is this same test binary, re-run with `TIDEMARK_CRASH_CHILD_DIR`
//! set so that `crash_child_appender` does the appending.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;
use rand::{Rng, SeedableRng};
use tidemark::model::{Histogram, HistogramSample, HistogramValue, Sample, Span};
use tidemark::storage::wal::FsyncPolicy;
use tidemark::storage::Db;

const SERIES_PER_BATCH: usize = 25;
const CHILD_ENV: &str = "TIDEMARK_CRASH_CHILD_DIR";

/// Timestamp of batch `k`; batch values are `k * 1000 + series`.
fn batch_t(k: u64) -> i64 {
    1_700_000_000_000 + k as i64 * 10
}

/// The histogram of batch `k`: count `k + 1` in one bucket.
fn batch_histogram(k: u64) -> Histogram {
    Histogram {
        count: k + 1,
        sum: k as f64,
        positive_spans: vec![Span {
            offset: 0,
            length: 1,
        }],
        positive_buckets: vec![k as i64 + 1],
        ..Default::default()
    }
}

/// Not a test on its own: the body of the child process.
#[test]
fn crash_child_appender() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let db = Db::open(&dir, options(FsyncPolicy::Batch)).expect("child open");
    // Continue after what earlier children stored.
    let start = dump(&db)
        .values()
        .flat_map(|v| v.last().map(|s| s.0))
        .max()
        .map_or(0, |t| ((t - batch_t(0)) / 10) as u64 + 1);
    let threads: Vec<_> = (0..2u64)
        .map(|th| {
            let db = &db;
            move || {
                for k in (start..start + 1_000_000).filter(|k| k % 2 == th) {
                    let mut batch: Vec<_> = (0..SERIES_PER_BATCH)
                        .map(|s| {
                            one(
                                series_labels(&format!("crash_{th}"), s),
                                vec![Sample::new(batch_t(k), (k * 1000 + s as u64) as f64)],
                            )
                        })
                        .collect();
                    batch.push(tidemark::storage::SeriesSamples {
                        created: Vec::new(),
                        labels: series_labels(&format!("crash_h_{th}"), 0),
                        samples: Vec::new(),
                        histograms: vec![HistogramSample {
                            t: batch_t(k),
                            h: HistogramValue::Int(batch_histogram(k)),
                        }],
                    });
                    let out = db.append(&batch).expect("append");
                    assert!(out.is_complete(), "{:?}", out.rejected.first());
                    println!("ack {k}");
                }
            }
        })
        .collect();
    std::thread::scope(|sc| {
        for t in threads {
            sc.spawn(t);
        }
    });
}

fn verify(dir: &std::path::Path, acked: &[u64]) -> usize {
    let db = Db::open(dir, options(FsyncPolicy::Batch)).expect("reopen after kill -9");
    let d = dump(&db);
    let hist: Vec<Vec<(i64, f64)>> = (0..2)
        .map(|th| histogram_counts(&db, &format!("crash_h_{th}")))
        .collect();
    for &k in acked {
        let h = &hist[(k % 2) as usize];
        let found = h
            .binary_search_by_key(&batch_t(k), |x| x.0)
            .ok()
            .map(|i| h[i].1);
        assert_eq!(
            found,
            Some((k + 1) as f64),
            "acknowledged histogram of batch {k} lost"
        );
        let th = k % 2;
        for s in 0..SERIES_PER_BATCH {
            let key = series_labels(&format!("crash_{th}"), s).to_string();
            let samples = d
                .get(&key)
                .unwrap_or_else(|| panic!("series {key} missing"));
            let want = (batch_t(k), ((k * 1000 + s as u64) as f64).to_bits());
            assert!(
                samples.binary_search(&want).is_ok(),
                "acknowledged batch {k} lost for {key}"
            );
        }
    }
    // Whatever is stored is whole: every stored timestamp has all series of its batch.
    for (th, hist) in hist.iter().enumerate() {
        let first = d
            .get(&series_labels(&format!("crash_{th}"), 0).to_string())
            .cloned()
            .unwrap_or_default();
        for s in 1..SERIES_PER_BATCH {
            let other = d
                .get(&series_labels(&format!("crash_{th}"), s).to_string())
                .cloned()
                .unwrap_or_default();
            assert_eq!(
                first.len(),
                other.len(),
                "batch stored partially for crash_{th} series {s}"
            );
        }
        assert_eq!(
            first.len(),
            hist.len(),
            "batch stored without its histogram for crash_{th}"
        );
    }
    d.values().map(Vec::len).sum()
}

#[test]
fn crash_kill9_at_random_moments_loses_no_acknowledged_batch() {
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut all_acked: Vec<u64> = Vec::new();
    for seed in 0..6u64 {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "crash_child_appender",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn child");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(k) = line
                    .strip_prefix("ack ")
                    .and_then(|k| k.parse::<u64>().ok())
                {
                    let _ = tx.send(k);
                }
            }
        });
        // Wait for the first acknowledgement (bounded), then a random moment.
        let first = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("child acknowledged nothing in 60 s");
        all_acked.push(first);
        let deadline = Instant::now() + Duration::from_millis(rng.gen_range(20..400));
        while Instant::now() < deadline {
            if let Ok(k) = rx.recv_timeout(Duration::from_millis(5)) {
                all_acked.push(k);
            }
        }
        child.kill().expect("kill -9");
        let _ = child.wait();
        reader.join().unwrap();
        all_acked.extend(rx.try_iter());
        let stored = verify(dir.path(), &all_acked);
        assert!(stored >= all_acked.len() * SERIES_PER_BATCH);
        eprintln!(
            "seed {seed}: {} batches acknowledged so far, {stored} samples stored",
            all_acked.len()
        );
    }
}
