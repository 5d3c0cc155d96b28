//! Blocks through the real binary over HTTP: remote-written history is
//! persisted by background compaction, answered by PromQL across blocks and
//! head, deleted and snapshotted through the admin API, and kept across a
//! clean restart (which loads the head snapshot).

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::http::{encode, get, metric, request};
use common::proc::{free_port, start_tidemark_with, wait_ready, wait_until, Proc};
use prost::Message;
use tidemark::ingest::proto::prometheus as v1;

const STEP: i64 = 15_000;
/// 4 h of samples: enough for one 2 h block (the head must span > 3 h).
const POINTS: i64 = 4 * 240;
/// 2023-11-14T00:00:00Z, a block-range boundary.
const T0: i64 = 1_699_920_000_000;
const SERIES: usize = 3;

fn write(addr: &str, from: i64, to: i64) {
    let series = (0..SERIES)
        .map(|n| v1::TimeSeries {
            labels: [("__name__", "blk_metric"), ("i", &n.to_string())]
                .iter()
                .map(|(k, v)| v1::Label {
                    name: Bytes::copy_from_slice(k.as_bytes()),
                    value: Bytes::copy_from_slice(v.as_bytes()),
                })
                .collect(),
            samples: (from..to)
                .map(|k| v1::Sample {
                    value: (k * (n as i64 + 1)) as f64,
                    timestamp: T0 + k * STEP,
                })
                .collect(),
            ..Default::default()
        })
        .collect();
    let req = v1::WriteRequest {
        timeseries: series,
        ..Default::default()
    };
    let body = snap::raw::Encoder::new()
        .compress_vec(&req.encode_to_vec())
        .unwrap();
    let (status, text) = request(
        addr,
        "POST",
        "/api/v1/write",
        &[
            ("Content-Type", "application/x-protobuf"),
            ("Content-Encoding", "snappy"),
            ("X-Prometheus-Remote-Write-Version", "0.1.0"),
        ],
        &body,
    )
    .expect("remote write");
    assert_eq!(status, 204, "{}", String::from_utf8_lossy(&text));
}

/// `count_over_time(blk_metric[5h])` at the end of the data, per series `i`.
fn counts(addr: &str) -> Vec<(String, String)> {
    let end = (T0 + (POINTS - 1) * STEP) / 1000;
    let (status, body) = get(
        addr,
        &format!(
            "/api/v1/query?query={}&time={end}",
            encode("count_over_time(blk_metric[5h])")
        ),
    )
    .unwrap();
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let mut out: Vec<(String, String)> = v["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["metric"]["i"].as_str().unwrap().to_string(),
                s["value"][1].as_str().unwrap().to_string(),
            )
        })
        .collect();
    out.sort();
    out
}

/// Starts the binary on `dir` with `args`, remote-writes the 4 h of
/// history and waits until background compaction has persisted its first
/// block.
fn start_with_one_block(dir: &std::path::Path, addr: &str, args: &[&str]) -> Proc {
    let mut p = start_tidemark_with(addr, dir, args);
    wait_ready(&mut p, addr, Duration::from_secs(30));
    for k in (0..POINTS).step_by(120) {
        write(addr, k, (k + 120).min(POINTS));
    }
    // The block appears before the head compaction is counted (the WAL
    // checkpoint comes in between), so wait for both.
    wait_until("a persisted block", Duration::from_secs(30), || {
        metric(addr, "tidemark_storage_blocks") == Some(1.0)
            && get(addr, "/metrics").is_some_and(|(_, m)| {
                m.contains("tidemark_storage_compactions_total{kind=\"head\"} 1")
            })
    });
    p
}

#[test]
fn history_is_persisted_queried_deleted_snapshotted_and_kept_across_restart() {
    let dir = tempfile::tempdir().unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let args = ["--compaction-interval", "200ms", "--enable-admin-api"];
    let mut p = start_with_one_block(dir.path(), &addr, &args);
    assert!(metric(&addr, "tidemark_storage_blocks_bytes").unwrap() > 0.0);
    let all = POINTS.to_string();
    let want: Vec<(String, String)> = (0..SERIES).map(|n| (n.to_string(), all.clone())).collect();
    assert_eq!(counts(&addr), want, "across block and head");

    // delete_series over the whole first hour of series i=0.
    let form = format!(
        "match[]={}&start={}&end={}",
        encode("blk_metric{i=\"0\"}"),
        T0 / 1000,
        (T0 + 3_600_000 - 1) / 1000
    );
    let (status, _) = request(
        &addr,
        "POST",
        &format!("/api/v1/admin/tsdb/delete_series?{form}"),
        &[],
        b"",
    )
    .unwrap();
    assert_eq!(status, 204);
    let mut want_after = want.clone();
    want_after[0].1 = (POINTS - 240).to_string();
    assert_eq!(counts(&addr), want_after, "after delete_series");

    // snapshot: the block hard-linked plus the head written as a block.
    let (status, body) = request(&addr, "POST", "/api/v1/admin/tsdb/snapshot", &[], b"").unwrap();
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let name = v["data"]["name"].as_str().unwrap();
    let snap = dir.path().join("snapshots").join(name);
    assert_eq!(std::fs::read_dir(&snap).unwrap().count(), 2, "{snap:?}");

    // A clean restart persists the head to blocks (no snapshot, the WAL
    // emptied), and everything is served from them after it.
    p.terminate(Duration::from_secs(30));
    assert!(!dir.path().join("head_snapshot").exists());
    assert!(dir.path().join("head_metadata").is_file());
    let mut p = start_tidemark_with(&addr, dir.path(), &args);
    wait_ready(&mut p, &addr, Duration::from_secs(30));
    assert_eq!(
        metric(&addr, "tidemark_head_series"),
        Some(0.0),
        "head starts empty"
    );
    assert!(metric(&addr, "tidemark_storage_blocks").unwrap() >= 2.0);
    assert_eq!(counts(&addr), want_after, "after restart");
    p.terminate(Duration::from_secs(30));

    // With --storage.persist-head-on-shutdown=false the head snapshot.
    let args2 = [&args[..], &["--storage.persist-head-on-shutdown=false"]].concat();
    let mut p = start_tidemark_with(&addr, dir.path(), &args2);
    wait_ready(&mut p, &addr, Duration::from_secs(30));
    write(&addr, POINTS, POINTS + 4);
    p.terminate(Duration::from_secs(30));
    assert!(dir.path().join("head_snapshot").is_file());
    let mut p = start_tidemark_with(&addr, dir.path(), &args2);
    wait_ready(&mut p, &addr, Duration::from_secs(30));
    assert!(!dir.path().join("head_snapshot").exists());
    p.terminate(Duration::from_secs(30));
}

/// A block damaged while the server was down (a chunk byte, which only
/// the full check reads): the server is ready without walking its blocks,
/// the first compaction right after finds the damage, moves the block to
/// `quarantine/` and counts it, and everything else is answered.
#[test]
fn a_damaged_block_is_quarantined_by_the_check_after_start() {
    let dir = tempfile::tempdir().unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let args = ["--compaction-interval", "200ms"];
    let mut p = start_with_one_block(dir.path(), &addr, &args);
    // The first block: written by compaction, before the head persisted at
    // shutdown adds more.
    let block_dirs = || -> Vec<std::path::PathBuf> {
        let mut v: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.file_name().is_some_and(|n| n.len() == 26) && p.is_dir())
            .collect();
        v.sort();
        v
    };
    let victim = block_dirs().remove(0);
    p.terminate(Duration::from_secs(30));
    let blocks_before = block_dirs().len();
    assert!(blocks_before >= 2, "{blocks_before}");
    let seg = victim.join("chunks").join("000001");
    let mut bytes = std::fs::read(&seg).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x5a;
    std::fs::write(&seg, bytes).unwrap();

    let mut p = start_tidemark_with(&addr, dir.path(), &args);
    wait_ready(&mut p, &addr, Duration::from_secs(30));
    wait_until(
        "the damaged block quarantined",
        Duration::from_secs(30),
        || metric(&addr, "tidemark_storage_quarantined_blocks_total") == Some(1.0),
    );
    assert_eq!(
        metric(&addr, "tidemark_storage_blocks_awaiting_checks"),
        Some(0.0)
    );
    assert_eq!(
        metric(&addr, "tidemark_storage_blocks"),
        Some((blocks_before - 1) as f64)
    );
    let name = victim.file_name().unwrap();
    assert!(dir.path().join("quarantine").join(name).is_dir());
    assert!(!victim.exists());
    // The first block held the first 2 h (480 points of each series).
    let rest = (POINTS - 480).to_string();
    let want: Vec<(String, String)> = (0..SERIES).map(|n| (n.to_string(), rest.clone())).collect();
    assert_eq!(counts(&addr), want, "everything but the quarantined block");
    p.terminate(Duration::from_secs(30));
}
