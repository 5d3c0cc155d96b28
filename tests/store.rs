//! The store role (`tidemark store`) against a real S3-compatible server
//! (SeaweedFS's `weed mini`, started here on 127.0.0.1): an ingesting
//! node ships blocks, the store serves them with query, query_range,
//! series, labels and label values answers EQUAL to the node's over the
//! shipped range; a prefix without `meta.json` is ignored; a block shipped
//! later is served within the sync interval; the store is not ready until
//! its first sync succeeds (bucket down at start), keeps serving its cache
//! when a later sync fails (counted in a self-metric), and refuses writes.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::http::{encode, get, metric, remote_write_v1, remote_write_v1_status, FloatPoint};
use common::proc::{free_port, start_role, tidemark_bin, wait_ready, wait_until, Proc};
use common::weed::{runtime, s3_store, s3_yaml, Weed};
use object_store::path::Path as ObjectPath;
use object_store::ObjectStore;

const STEP: i64 = 15_000;
/// 2023-11-14T00:00:00Z, a block-range boundary.
const T0: i64 = 1_699_920_000_000;
/// A prefix that looks like a block but has no `meta.json`.
const HALF_BLOCK: &str = "01HZZZZZZZZZZZZZZZZZZZZZZZ";
/// The store's sync interval in these tests.
const SYNC: Duration = Duration::from_secs(1);

/// Starts `tidemark store` on `addr` over the bucket in `cfg`.
fn start_store(addr: &str, cfg: &Path, cache: &Path) -> Proc {
    start_store_with(addr, cfg, cache, &[])
}

/// [`start_store`] with more flags.
fn start_store_with(addr: &str, cfg: &Path, cache: &Path, extra: &[&str]) -> Proc {
    let mut flags = vec![
        format!("--objstore.config.file={}", cfg.display()),
        format!("--store.cache-dir={}", cache.display()),
        format!("--store.sync-interval={}ms", SYNC.as_millis()),
    ];
    flags.extend(extra.iter().map(|f| f.to_string()));
    start_role("store", addr, &flags)
}

/// SeaweedFS, a client of its bucket and its bucket config
/// (`<dir>/bucket.yml`).
fn start_bucket(dir: &Path) -> (Weed, std::sync::Arc<dyn ObjectStore>, std::path::PathBuf) {
    let weed = Weed::start(&dir.join("weed"));
    let bucket = s3_store(&weed.endpoint());
    let cfg = dir.join("bucket.yml");
    std::fs::write(&cfg, s3_yaml(&weed.endpoint())).unwrap();
    (weed, bucket, cfg)
}

/// SeaweedFS, its bucket config (`<dir>/bucket.yml`), a client, and a
/// ready ingesting node (`replica="a"`) shipping to it, compacting often.
fn start_shipping_node(
    dir: &Path,
) -> (
    Weed,
    std::sync::Arc<dyn ObjectStore>,
    std::path::PathBuf,
    String,
    Proc,
) {
    let (weed, bucket, cfg) = start_bucket(dir);
    let (node, n) = start_node_shipping_to(&dir.join("node"), &cfg, "a");
    (weed, bucket, cfg, node, n)
}

/// A ready ingesting node (`replica=<replica>`) with its data in `dir`,
/// shipping to the bucket in `cfg`, compacting often.
fn start_node_shipping_to(dir: &Path, cfg: &Path, replica: &str) -> (String, Proc) {
    let node = format!("127.0.0.1:{}", free_port());
    let mut n = common::proc::start_tidemark_with(
        &node,
        dir,
        &[
            &format!("--objstore.config.file={}", cfg.display()),
            &format!("--external-label=replica={replica}"),
            "--compaction-interval=200ms",
            "--shipper.sync-interval=1s",
            "--shipper.max-backoff=1s",
        ],
    );
    wait_ready(&mut n, &node, Duration::from_secs(30));
    (node, n)
}

/// Remote-writes hours `[from_h, to_h)` after [`T0`] of five series
/// (`store_metric{i, job}`, `other_metric{job}`), an hour a request.
fn write_hours(addr: &str, from_h: i64, to_h: i64) {
    write_hours_with(addr, from_h, to_h, 0);
}

/// [`write_hours`] plus `bulk` series `bulk_metric{i}` (values of a few
/// shapes: counters, gauges, constants).
fn write_hours_with(addr: &str, from_h: i64, to_h: i64, bulk: usize) {
    write_hours_shifted(addr, from_h, to_h, bulk, 0, 0.0);
}

/// [`write_hours_with`] with every timestamp `dt` ms later and every value
/// `dv` more (another HA replica's view of the same series).
fn write_hours_shifted(addr: &str, from_h: i64, to_h: i64, bulk: usize, dt: i64, dv: f64) {
    let names: Vec<String> = (0..bulk).map(|i| i.to_string()).collect();
    let mut sets: Vec<Vec<(&str, &str)>> = vec![
        vec![("__name__", "store_metric"), ("i", "0"), ("job", "a")],
        vec![("__name__", "store_metric"), ("i", "1"), ("job", "a")],
        vec![("__name__", "store_metric"), ("i", "2"), ("job", "b")],
        vec![("__name__", "other_metric"), ("job", "a")],
        vec![("__name__", "other_metric"), ("job", "c")],
    ];
    for n in &names {
        sets.push(vec![
            ("__name__", "bulk_metric"),
            ("i", n.as_str()),
            ("job", "bulk"),
        ]);
    }
    for h in from_h..to_h {
        let points: Vec<FloatPoint<'_>> = (h * 240..(h + 1) * 240)
            .flat_map(|k| {
                sets.iter()
                    .enumerate()
                    .map(move |(n, l)| (&l[..], T0 + k * STEP + dt, value(n, k) + dv))
            })
            .collect();
        remote_write_v1(addr, &points);
    }
}

/// Series `n`'s value at step `k`: counters for the first five, then
/// counters, gauges with two decimals and constants in turn.
fn value(n: usize, k: i64) -> f64 {
    match n {
        0..5 => (k * (n as i64 + 1)) as f64,
        _ if n.is_multiple_of(3) => (k * (n as i64 % 17 + 1)) as f64,
        _ if n % 3 == 1 => {
            // A hash of (n, k): values a codec cannot predict.
            let mut x = (n as u64) << 32 ^ k as u64;
            x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            ((x ^ (x >> 31)) % 100_000) as f64 / 100.0
        }
        _ => n as f64,
    }
}

/// Bytes of block `ulid`'s index and of its chunk segments in the bucket.
fn block_bytes(store: &dyn ObjectStore, ulid: &str) -> (u64, u64) {
    let rt = runtime();
    let top = rt
        .block_on(store.list_with_delimiter(Some(&ObjectPath::from(ulid))))
        .unwrap();
    let index = top
        .objects
        .iter()
        .find(|o| o.location.filename() == Some("index"))
        .map(|o| o.size)
        .unwrap();
    let chunks = rt
        .block_on(store.list_with_delimiter(Some(&ObjectPath::from(format!("{ulid}/chunks")))))
        .unwrap();
    (index, chunks.objects.iter().map(|o| o.size).sum())
}

/// Complete blocks in the bucket: `(ulid, min_time, max_time)`.
fn bucket_blocks(store: &dyn ObjectStore) -> Vec<(String, i64, i64)> {
    let rt = runtime();
    let listed = rt.block_on(store.list_with_delimiter(None)).unwrap();
    let mut out = Vec::new();
    for p in listed.common_prefixes {
        let got = rt.block_on(async { store.get(&p.child("meta.json")).await });
        let Ok(r) = got else { continue };
        let body = rt.block_on(r.bytes()).unwrap();
        let m: serde_json::Value = serde_json::from_slice(&body).unwrap();
        out.push((
            m["ulid"].as_str().unwrap().to_string(),
            m["minTime"].as_i64().unwrap(),
            m["maxTime"].as_i64().unwrap(),
        ));
    }
    out.sort_by_key(|b| b.1);
    out
}

/// `data` of a successful API answer.
fn api_data(addr: &str, path: &str) -> serde_json::Value {
    let (status, body) = get(addr, path).unwrap_or_else(|| panic!("{addr}{path}: no answer"));
    assert_eq!(status, 200, "{addr}{path}: {body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["status"], "success", "{body}");
    v["data"].clone()
}

/// `data` of a successful answer of the store, without the `replica`
/// label its series carry (the stream label of the node's blocks: the
/// node's own answers do not have it), so it compares with the node's.
fn store_data(addr: &str, path: &str) -> serde_json::Value {
    without_replica(api_data(addr, path))
}

/// `v` with every `replica` key and every `"replica"` array element gone.
fn without_replica(v: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match v {
        Value::Object(mut o) => {
            o.remove("replica");
            Value::Object(
                o.into_iter()
                    .map(|(k, v)| (k, without_replica(v)))
                    .collect(),
            )
        }
        Value::Array(a) => Value::Array(
            a.into_iter()
                .filter(|e| e.as_str() != Some("replica"))
                .map(without_replica)
                .collect(),
        ),
        v => v,
    }
}

/// The read calls compared between node and store over `[mint, maxt)`
/// (times in ms; the API takes seconds).
fn read_calls(mint: i64, maxt: i64) -> Vec<String> {
    let s = |ms: i64| format!("{}", ms as f64 / 1000.0);
    let (start, end) = (s(mint), s(maxt - 1));
    let mut out = Vec::new();
    for q in [
        "store_metric",
        "rate(store_metric[5m])",
        "sum by (job) (rate(store_metric[10m]))",
        "other_metric * 2 + on(job) group_left sum by (job) (store_metric)",
        "max_over_time(other_metric[30m])",
    ] {
        out.push(format!(
            "/api/v1/query_range?query={}&start={start}&end={end}&step=60",
            encode(q)
        ));
        out.push(format!("/api/v1/query?query={}&time={end}", encode(q)));
    }
    for m in ["store_metric", "{job=\"a\"}", "{__name__=~\".+_metric\"}"] {
        out.push(format!(
            "/api/v1/series?match[]={}&start={start}&end={end}",
            encode(m)
        ));
    }
    out.push(format!("/api/v1/labels?start={start}&end={end}"));
    out.push(format!(
        "/api/v1/labels?match[]={}&start={start}&end={end}",
        encode("other_metric")
    ));
    out.push(format!("/api/v1/label/job/values?start={start}&end={end}"));
    out.push(format!(
        "/api/v1/label/__name__/values?start={start}&end={end}"
    ));
    out
}

/// Every [`read_calls`] answer of the store equals the node's, and is not
/// empty. Returns the time the node and the store took for all of them.
fn assert_same_answers(node: &str, store: &str, mint: i64, maxt: i64) -> (Duration, Duration) {
    let (mut t_node, mut t_store) = (Duration::ZERO, Duration::ZERO);
    for call in read_calls(mint, maxt) {
        let t = Instant::now();
        let want = api_data(node, &call);
        t_node += t.elapsed();
        let t = Instant::now();
        let got = store_data(store, &call);
        t_store += t.elapsed();
        assert_eq!(got, want, "{call}");
        let empty = match &want {
            serde_json::Value::Array(a) => a.is_empty(),
            v => v["result"].as_array().is_some_and(|a| a.is_empty()),
        };
        assert!(!empty, "{call}: empty answer proves nothing: {want}");
    }
    (t_node, t_store)
}

#[test]
fn store_serves_shipped_blocks_like_the_node_ignores_half_blocks_and_picks_up_new_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let (weed, bucket, cfg, node, mut n) = start_shipping_node(tmp.path());
    write_hours(&node, 0, 4);
    wait_until("a block in the bucket", Duration::from_secs(60), || {
        !bucket_blocks(bucket.as_ref()).is_empty()
    });
    let first = bucket_blocks(bucket.as_ref());
    assert_eq!(first.len(), 1, "{first:?}");

    // A block still being uploaded: files, no meta.json.
    let rt = runtime();
    for key in ["index", "chunks/000001"] {
        rt.block_on(bucket.put(
            &ObjectPath::from(format!("{HALF_BLOCK}/{key}")),
            "not a block".into(),
        ))
        .unwrap();
    }

    let store = format!("127.0.0.1:{}", free_port());
    let cache = tmp.path().join("cache");
    let mut s = start_store(&store, &cfg, &cache);
    wait_ready(&mut s, &store, Duration::from_secs(60));
    let (_, mint, maxt) = first[0];
    let (t_node, t_store) = assert_same_answers(&node, &store, mint, maxt);
    eprintln!(
        "{} read calls over one 2 h block: node {t_node:?}, store {t_store:?} (whole blocks: all local after the sync)",
        read_calls(mint, maxt).len()
    );
    assert_eq!(metric(&store, "tidemark_store_blocks_loaded"), Some(1.0));
    assert_eq!(
        metric(&store, "tidemark_store_sync_failures_total"),
        Some(0.0)
    );
    assert!(metric(
        &store,
        "tidemark_store_last_successful_sync_timestamp_seconds"
    )
    .is_some_and(|t| t > 1.0e9));
    let mut cached: Vec<String> = std::fs::read_dir(cache.join("blocks"))
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.len() == 26)
        .collect();
    cached.sort();
    assert_eq!(cached, vec![first[0].0.clone()], "half block never cached");

    // Read only: every write endpoint answers 405 naming the reason.
    let one: Vec<(&str, &str)> = vec![("__name__", "x")];
    let (status, body) = remote_write_v1_status(&store, &[(&one[..], T0, 1.0)]);
    assert_eq!(status, 405, "{body}");
    assert!(body.contains("read-only store"), "{body}");
    let (status, _) = common::http::request(
        &store,
        "POST",
        "/api/v1/otlp/v1/metrics",
        &[("Content-Type", "application/x-protobuf")],
        b"",
    )
    .unwrap();
    assert_eq!(status, 405);

    // A block shipped later is served within the sync interval (plus the
    // download): the node ships hours 4..6 as its second block.
    write_hours(&node, 4, 6);
    let shipped = Instant::now();
    wait_until(
        "a second block in the bucket",
        Duration::from_secs(60),
        || bucket_blocks(bucket.as_ref()).len() == 2,
    );
    let seen = Instant::now();
    let blocks = bucket_blocks(bucket.as_ref());
    wait_until("the store serving the second block", SYNC * 10, || {
        metric(&store, "tidemark_store_blocks_loaded") == Some(2.0)
    });
    eprintln!(
        "second block: in the bucket {:?} after the write, served {:?} after that",
        seen - shipped,
        seen.elapsed()
    );
    let (_, mint2, maxt2) = blocks[1];
    assert_same_answers(&node, &store, mint2, maxt2);
    let (t_node, t_store) = assert_same_answers(&node, &store, mint, maxt2);
    eprintln!("read calls over both blocks (4 h): node {t_node:?}, store {t_store:?}");

    s.terminate(Duration::from_secs(30));
    n.terminate(Duration::from_secs(30));
    drop(weed);
}

#[test]
fn store_is_ready_only_after_its_first_sync_and_keeps_serving_when_the_bucket_fails() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut weed, bucket, cfg, node, mut n) = start_shipping_node(tmp.path());
    write_hours(&node, 0, 4);
    wait_until("a block in the bucket", Duration::from_secs(60), || {
        !bucket_blocks(bucket.as_ref()).is_empty()
    });
    let (_, mint, maxt) = bucket_blocks(bucket.as_ref())[0];
    n.terminate(Duration::from_secs(30));

    // The bucket is down when the store starts: alive, not ready.
    weed.stop();
    let store = format!("127.0.0.1:{}", free_port());
    let mut s = start_store(&store, &cfg, &tmp.path().join("cache"));
    wait_until(
        "the store answering /-/healthy",
        Duration::from_secs(30),
        || get(&store, "/-/healthy").map(|r| r.0) == Some(200),
    );
    wait_until("a failed sync counted", Duration::from_secs(60), || {
        metric(&store, "tidemark_store_sync_failures_total").is_some_and(|v| v >= 2.0)
    });
    assert_eq!(get(&store, "/-/ready").map(|r| r.0), Some(503));
    let q = format!(
        "/api/v1/query?query=store_metric&time={}",
        (maxt - 1) / 1000
    );
    assert_eq!(get(&store, &q).map(|r| r.0), Some(503));

    // The bucket comes back: ready after the first sync, data served.
    weed.resume();
    wait_ready(&mut s, &store, Duration::from_secs(60));
    let data = api_data(&store, &q);
    assert_eq!(data["result"].as_array().map(Vec::len), Some(3), "{data}");

    // The bucket fails again: the cache keeps serving, failures counted.
    let before = metric(&store, "tidemark_store_sync_failures_total").unwrap();
    weed.stop();
    wait_until(
        "a later failed sync counted",
        Duration::from_secs(60),
        || metric(&store, "tidemark_store_sync_failures_total").is_some_and(|v| v > before),
    );
    assert_eq!(get(&store, "/-/ready").map(|r| r.0), Some(200));
    assert_eq!(api_data(&store, &q), data);
    let range = format!(
        "/api/v1/query_range?query=store_metric&start={}&end={}&step=60",
        mint / 1000,
        (maxt - 1) / 1000
    );
    assert_eq!(
        api_data(&store, &range)["result"].as_array().map(Vec::len),
        Some(3)
    );
    s.terminate(Duration::from_secs(30));
}

#[test]
fn store_without_a_bucket_config_refuses_to_start_naming_the_flag() {
    let out = Command::new(tidemark_bin())
        .args(["store", "--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    // The error is logged (stdout, as every log line).
    let err = String::from_utf8_lossy(&[out.stdout, out.stderr].concat()).into_owned();
    assert!(err.contains("--objstore.config.file"), "{err}");
}

/// Copies the block directory `src` to `dst` (chunks/ and top-level files).
fn copy_block(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst.join("chunks")).unwrap();
    for sub in ["", "chunks"] {
        for e in std::fs::read_dir(src.join(sub)).unwrap() {
            let e = e.unwrap();
            if e.path().is_file() {
                std::fs::copy(e.path(), dst.join(sub).join(e.file_name())).unwrap();
            }
        }
    }
}

fn cached_dirs(dir: &Path) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !["wal", "lock"].contains(&n.as_str()))
        .collect();
    out.sort();
    out
}

#[test]
fn sync_serves_a_merged_block_not_its_parents_and_drops_blocks_gone_from_the_bucket() {
    use tidemark::model::Sample;
    use tidemark::storage::Db;
    use tidemark::store::{BucketStore, StoreMetrics, StoreOptions};

    let tmp = tempfile::tempdir().unwrap();
    // A level-1 block written by the library.
    let src = common::open(&tmp.path().join("src"));
    let mut t = T0;
    while t < T0 + 4 * 3_600_000 {
        let batch: Vec<_> = (0..3)
            .map(|n| {
                common::one(
                    common::series_labels("m", n),
                    vec![Sample::new(t, n as f64)],
                )
            })
            .collect();
        assert!(src.append(&batch).unwrap().is_complete());
        t += STEP;
    }
    src.compact().unwrap();
    let level1 = src.blocks().into_iter().next().expect("a block");
    // The bucket: that block, and a level-2 block naming it as parent
    // (the same data under another ULID, as the compactor would write).
    let bkt = tmp.path().join("bucket");
    copy_block(&src.dir().join(&level1.ulid), &bkt.join(&level1.ulid));
    let merged = tidemark::storage::block::new_ulid();
    copy_block(&src.dir().join(&level1.ulid), &bkt.join(&merged));
    let meta_path = bkt.join(&merged).join("meta.json");
    let mut m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&meta_path).unwrap()).unwrap();
    m["ulid"] = merged.clone().into();
    m["compaction"] = serde_json::json!({
        "level": 2,
        "sources": [level1.ulid],
        "parents": [{"ulid": level1.ulid, "minTime": level1.min_time, "maxTime": level1.max_time}],
    });
    std::fs::write(&meta_path, serde_json::to_vec(&m).unwrap()).unwrap();

    let cfg = format!(
        "type: FILESYSTEM\nconfig:\n  directory: {}\n",
        bkt.display()
    );
    let bucket = tidemark::shipper::objstore::BucketConfig::parse(&cfg).unwrap();
    let opts = StoreOptions {
        store: bucket.build().unwrap(),
        prefix: String::new(),
        sync_interval: SYNC,
        index_cache_bytes: 1 << 30,
        chunk_cache_bytes: 1 << 30,
    };
    let cache = tmp.path().join("cache");
    // A phase 0 cache (whole blocks at the top) is cleared at open.
    copy_block(&src.dir().join(&level1.ulid), &cache.join(&level1.ulid));
    let rt = runtime();
    let metrics = StoreMetrics::register(&mut prometheus_client::registry::Registry::default());
    let store = {
        let _rt = rt.enter();
        BucketStore::open(opts.clone(), &cache, metrics.clone()).unwrap()
    };
    let db = std::sync::Arc::new(
        Db::open(
            &cache,
            common::options(tidemark::storage::wal::FsyncPolicy::Never),
        )
        .unwrap(),
    );
    assert!(
        db.blocks().is_empty(),
        "phase 0 blocks removed before the Db opens"
    );

    let r = rt.block_on(store.sync(&db)).unwrap();
    assert_eq!((r.wanted, r.added, r.removed), (1, 1, 0), "{r:?}");
    let served: Vec<String> = db.blocks().into_iter().map(|b| b.ulid).collect();
    assert_eq!(served, vec![merged.clone()]);
    assert_eq!(cached_dirs(&cache.join("blocks")), vec![merged.clone()]);
    let q = db.querier(T0, T0 + 4 * 3_600_000);
    let series = q.select(&[tidemark::model::Matcher::eq("__name__", "m")]);
    assert_eq!(series.len(), 3);
    let n: usize = series.iter().map(|s| s.samples().count()).sum();
    assert_eq!(n, 3 * 2 * 240, "every sample of the 2 h block");
    assert!(q.take_problems().is_empty());
    assert_eq!(cached_dirs(&cache.join("index")), vec![merged.clone()]);

    // The merged block leaves the bucket: its parent is served again.
    std::fs::remove_dir_all(bkt.join(&merged)).unwrap();
    let r = rt.block_on(store.sync(&db)).unwrap();
    assert_eq!((r.wanted, r.added, r.removed), (1, 1, 1), "{r:?}");
    let served: Vec<String> = db.blocks().into_iter().map(|b| b.ulid).collect();
    assert_eq!(served, vec![level1.ulid.clone()]);
    assert_eq!(
        cached_dirs(&cache.join("blocks")),
        vec![level1.ulid.clone()]
    );
    assert!(
        cached_dirs(&cache.join("index")).is_empty(),
        "the gone block's index is dropped"
    );

    // Nothing changed: nothing added.
    let r = rt.block_on(store.sync(&db)).unwrap();
    assert_eq!((r.wanted, r.added, r.removed), (1, 0, 0), "{r:?}");

    // A restart on the same cache, after a crash mid-download: the
    // leftover is removed, the caches start empty.
    db.close().unwrap();
    drop(db);
    drop(store);
    std::fs::create_dir_all(cache.join("blocks").join(format!("{merged}.download"))).unwrap();
    let store = {
        let _rt = rt.enter();
        BucketStore::open(opts, &cache, metrics).unwrap()
    };
    let db = std::sync::Arc::new(
        Db::open(
            &cache,
            common::options(tidemark::storage::wal::FsyncPolicy::Never),
        )
        .unwrap(),
    );
    let r = rt.block_on(store.sync(&db)).unwrap();
    assert_eq!((r.wanted, r.added, r.removed), (1, 1, 0), "{r:?}");
    assert_eq!(
        cached_dirs(&cache.join("blocks")),
        vec![level1.ulid.clone()]
    );
    assert_eq!(db.blocks().len(), 1);
}

/// The store's `(index, chunk)` bytes read from the bucket so far.
fn fetched(store: &str) -> (f64, f64) {
    (
        metric(store, "tidemark_store_index_fetched_bytes_total").unwrap(),
        metric(store, "tidemark_store_chunk_fetched_bytes_total").unwrap(),
    )
}

/// Sum of the file sizes directly in `dir`.
fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter_map(|e| e.metadata().ok())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .sum()
}

/// The `(status, body)` of a query, and whether it carries warnings.
fn query_status(addr: &str, path: &str) -> (u16, serde_json::Value) {
    let (status, body) = get(addr, path).unwrap_or_else(|| panic!("{addr}{path}: no answer"));
    (
        status,
        serde_json::from_str(&body).unwrap_or(serde_json::Value::Null),
    )
}

#[test]
fn store_reads_ranges_through_bounded_caches_equal_to_the_node_and_through_an_outage() {
    const BULK: usize = 300;
    let tmp = tempfile::tempdir().unwrap();
    let (mut weed, bucket, cfg, node, mut n) = start_shipping_node(tmp.path());
    write_hours_with(&node, 0, 8, BULK);
    wait_until(
        "three blocks in the bucket",
        Duration::from_secs(90),
        || bucket_blocks(bucket.as_ref()).len() >= 3,
    );
    let blocks = bucket_blocks(bucket.as_ref());
    let sizes: Vec<(u64, u64)> = blocks
        .iter()
        .map(|b| block_bytes(bucket.as_ref(), &b.0))
        .collect();
    let (mint, maxt) = (blocks[0].1, blocks[blocks.len() - 1].2);
    let total_index: u64 = sizes.iter().map(|s| s.0).sum();
    let total_chunks: u64 = sizes.iter().map(|s| s.1).sum();
    eprintln!(
        "{} blocks: index {total_index} B, chunks {total_chunks} B",
        blocks.len()
    );

    // 1. Default caches: cold, then warm, against the node; bytes read.
    let store = format!("127.0.0.1:{}", free_port());
    let mut s = start_store(&store, &cfg, &tmp.path().join("cache-a"));
    wait_ready(&mut s, &store, Duration::from_secs(60));
    // A narrow selector over one block reads a small part of its chunks.
    let (b1_min, b1_max) = (blocks[1].1, blocks[1].2);
    let narrow = format!(
        "/api/v1/query_range?query={}&start={}&end={}&step=60",
        encode("bulk_metric{i=\"7\"}"),
        b1_min / 1000 + 600,
        b1_max / 1000 - 600
    );
    let before = fetched(&store);
    assert_eq!(store_data(&store, &narrow), api_data(&node, &narrow));
    let after = fetched(&store);
    let chunk_read = after.1 - before.1;
    eprintln!(
        "narrow selector over one block: {chunk_read} B of chunks read of its {} B, {} ranged GETs, index {} B",
        sizes[1].1,
        metric(&store, "tidemark_store_chunk_fetch_ranges_total").unwrap(),
        after.0 - before.0
    );
    assert!(chunk_read > 0.0);
    assert!(
        chunk_read * 8.0 < sizes[1].1 as f64,
        "ranged reads: {chunk_read} B of {} B",
        sizes[1].1
    );
    s.terminate(Duration::from_secs(30));

    // The figure: each query on the node, then on a store with empty
    // caches (cold), then again (warm), with the bytes each read.
    let mut s = start_store(&store, &cfg, &tmp.path().join("cache-c"));
    wait_ready(&mut s, &store, Duration::from_secs(60));
    let range = |q: &str| {
        format!(
            "/api/v1/query_range?query={}&start={}&end={}&step=60",
            encode(q),
            mint / 1000,
            (maxt - 1) / 1000
        )
    };
    eprintln!(
        "FIGURE store cold/warm, {} blocks of {} series, range queries over all of them, step 60s (ms; bytes read from the bucket; \
         cold = the caches hold what the queries above read):",
        blocks.len(),
        BULK + 5
    );
    for q in [
        "bulk_metric{i=\"42\"}",
        "rate(bulk_metric{i=~\"1.\"}[5m])",
        "sum(rate(bulk_metric[5m]))",
        "max_over_time(bulk_metric{job=\"bulk\"}[30m])",
        "count by (job) (bulk_metric)",
    ] {
        let call = range(q);
        let t = Instant::now();
        let want = api_data(&node, &call);
        let t_node = t.elapsed();
        let b0 = fetched(&store);
        let t = Instant::now();
        let got = store_data(&store, &call);
        let t_cold = t.elapsed();
        let b1 = fetched(&store);
        let t = Instant::now();
        let again = store_data(&store, &call);
        let t_warm = t.elapsed();
        let b2 = fetched(&store);
        assert_eq!(got, want, "{q}");
        assert_eq!(again, want, "{q}");
        assert_eq!(b2, b1, "{q}: warm reads come from the caches");
        eprintln!(
            "FIGURE {q:<48} node {:>7.1}  store cold {:>7.1}  warm {:>7.1}  read cold: index {:>6.0} B + chunks {:>7.0} B",
            t_node.as_secs_f64() * 1e3,
            t_cold.as_secs_f64() * 1e3,
            t_warm.as_secs_f64() * 1e3,
            b1.0 - b0.0,
            b1.1 - b0.1
        );
    }
    s.terminate(Duration::from_secs(30));

    // 2. Caches far smaller than the data: an index cache holding one
    // index, a chunk cache of 32 KiB. Still equal, every raw sample too.
    let max_index = sizes.iter().map(|s| s.0).max().unwrap();
    let index_cap = max_index * 3 / 2;
    let chunk_cap: u64 = 32 << 10;
    assert!(chunk_cap * 4 < total_chunks && index_cap < total_index);
    let cache = tmp.path().join("cache-b");
    let mut s = start_store_with(
        &store,
        &cfg,
        &cache,
        &[
            &format!("--store.index-cache-size={index_cap}"),
            &format!("--store.chunk-cache-size={chunk_cap}"),
        ],
    );
    wait_ready(&mut s, &store, Duration::from_secs(60));
    let raw: Vec<String> = blocks
        .iter()
        .map(|b| {
            format!(
                "/api/v1/query?query={}&time={}",
                encode("{__name__=~\".+_metric\"}[2h]"),
                (b.2 - 1) / 1000
            )
        })
        .collect();
    for round in 0..2 {
        assert_same_answers(&node, &store, mint, maxt);
        for q in &raw {
            let want = api_data(&node, q);
            assert_eq!(
                want["result"].as_array().map(Vec::len),
                Some(BULK + 5),
                "{q}"
            );
            assert_eq!(store_data(&store, q), want, "round {round}: {q}");
        }
        let index_bytes = metric(&store, "tidemark_store_index_cache_bytes").unwrap();
        let chunk_bytes = metric(&store, "tidemark_store_chunk_cache_bytes").unwrap();
        assert!(
            index_bytes <= index_cap as f64,
            "{index_bytes} > {index_cap}"
        );
        assert!(
            chunk_bytes <= chunk_cap as f64,
            "{chunk_bytes} > {chunk_cap}"
        );
        assert!(dir_bytes(&cache.join("index")) <= index_cap);
    }
    for m in [
        "tidemark_store_index_cache_evictions_total",
        "tidemark_store_chunk_cache_evictions_total",
        "tidemark_store_index_cache_hits_total",
        "tidemark_store_chunk_cache_hits_total",
    ] {
        assert!(metric(&store, m).is_some_and(|v| v > 0.0), "{m}");
    }

    // 3. The bucket stops. A query whose index and chunks are cached still
    // answers whole; one that needs another block's index says the answer
    // is partial (or fails), never answers silently incomplete.
    let mid = |b: &(String, i64, i64)| (b.1 + b.2) / 2 / 1000;
    let q_cached = format!(
        "/api/v1/query?query={}&time={}",
        encode("bulk_metric{i=\"4\"}"),
        mid(&blocks[2])
    );
    let q_other = format!(
        "/api/v1/query?query={}&time={}",
        encode("bulk_metric{i=\"5\"}"),
        mid(&blocks[0])
    );
    let want_cached = api_data(&node, &q_cached);
    let want_other = api_data(&node, &q_other);
    assert_eq!(store_data(&store, &q_cached), want_cached);
    assert_eq!(store_data(&store, &q_cached), want_cached);
    weed.stop();
    let (status, body) = query_status(&store, &q_cached);
    assert_eq!(status, 200, "{body}");
    assert_eq!(without_replica(body["data"].clone()), want_cached);
    assert!(body.get("warnings").is_none(), "{body}");
    let failures = metric(&store, "tidemark_store_bucket_read_failures_total").unwrap();
    let (status, body) = query_status(&store, &q_other);
    let warned = body["warnings"].as_array().is_some_and(|w| {
        w.iter()
            .any(|w| w.as_str().is_some_and(|w| w.contains("could not be read")))
    });
    assert!(status >= 400 || warned, "{status}: {body}");
    assert_ne!(without_replica(body["data"].clone()), want_other);
    assert!(metric(&store, "tidemark_store_bucket_read_failures_total").unwrap() > failures);
    // Series and label calls say so too.
    for call in [
        format!(
            "/api/v1/series?match[]={}&start={}&end={}",
            encode("bulk_metric{i=\"5\"}"),
            blocks[0].1 / 1000,
            (blocks[0].2 - 1) / 1000
        ),
        format!(
            "/api/v1/label/i/values?start={}&end={}",
            blocks[0].1 / 1000,
            (blocks[0].2 - 1) / 1000
        ),
    ] {
        let (status, body) = query_status(&store, &call);
        let warned = body["warnings"].as_array().is_some_and(|w| !w.is_empty());
        assert!(status >= 400 || warned, "{call}: {status}: {body}");
    }
    eprintln!("bucket down: cached query answered whole; uncached one: {status} {body}");

    // 4. The bucket is back: the same query answers whole again.
    weed.resume();
    let (status, body) = query_status(&store, &q_other);
    assert_eq!(status, 200, "{body}");
    assert_eq!(without_replica(body["data"].clone()), want_other);
    assert!(body.get("warnings").is_none(), "{body}");
    assert_same_answers(&node, &store, mint, maxt);

    s.terminate(Duration::from_secs(30));
    n.terminate(Duration::from_secs(30));
}

/// `result` of an instant query answer keyed by its series' labels.
fn by_series(data: &serde_json::Value) -> std::collections::BTreeMap<String, serde_json::Value> {
    data["result"]
        .as_array()
        .unwrap_or_else(|| panic!("no result: {data}"))
        .iter()
        .map(|r| (r["metric"].to_string(), r["values"].clone()))
        .collect()
}

#[test]
fn store_keeps_ha_replicas_apart_by_their_stream_labels_and_the_query_role_dedups_them() {
    let tmp = tempfile::tempdir().unwrap();
    let (weed, bucket, cfg) = start_bucket(tmp.path());
    // Two HA replicas of the same series: b samples 5 s after a, values
    // 0.5 higher. Each ships its first 2 h block.
    let (a, mut pa) = start_node_shipping_to(&tmp.path().join("a"), &cfg, "a");
    let (b, mut pb) = start_node_shipping_to(&tmp.path().join("b"), &cfg, "b");
    write_hours(&a, 0, 4);
    write_hours_shifted(&b, 0, 4, 0, 5_000, 0.5);
    wait_until(
        "both replicas' blocks in the bucket",
        Duration::from_secs(60),
        || bucket_blocks(bucket.as_ref()).len() == 2,
    );
    let h2 = 2 * 3_600_000;
    for (ulid, mint, maxt) in bucket_blocks(bucket.as_ref()) {
        assert!(mint >= T0 && maxt <= T0 + h2, "{ulid}: [{mint}, {maxt})");
    }

    let store = format!("127.0.0.1:{}", free_port());
    let mut s = start_store(&store, &cfg, &tmp.path().join("cache"));
    wait_ready(&mut s, &store, Duration::from_secs(60));
    wait_until("the store serving both blocks", SYNC * 10, || {
        metric(&store, "tidemark_store_blocks_loaded") == Some(2.0)
    });

    // Every raw sample of the first 2 h, node by node and stream by stream.
    let time = format!("{}", (T0 + h2 - 1) as f64 / 1000.0);
    let raw = |selector: &str| {
        format!(
            "/api/v1/query?query={}&time={time}",
            encode(&format!("{selector}[2h]"))
        )
    };
    let want_a = api_data(&a, &raw("store_metric"));
    let want_b = api_data(&b, &raw("store_metric"));
    for want in [&want_a, &want_b] {
        let series = by_series(want);
        assert_eq!(series.len(), 3, "{want}");
        assert!(series
            .values()
            .all(|v| v.as_array().map(Vec::len) == Some(480)));
    }
    assert_ne!(by_series(&want_a), by_series(&want_b));
    for (replica, want) in [("a", &want_a), ("b", &want_b)] {
        let got = api_data(
            &store,
            &raw(&format!(r#"store_metric{{replica="{replica}"}}"#)),
        );
        let result = got["result"].as_array().unwrap();
        assert!(
            result.iter().all(|r| r["metric"]["replica"] == replica),
            "{got}"
        );
        assert_eq!(&without_replica(got), want, "replica {replica}");
    }
    let both = api_data(&store, &raw("store_metric"));
    assert_eq!(both["result"].as_array().map(Vec::len), Some(6), "{both}");
    let none = api_data(&store, &raw(r#"store_metric{replica=""}"#));
    assert_eq!(none["result"].as_array().map(Vec::len), Some(0), "{none}");

    let labels = api_data(&store, "/api/v1/labels");
    assert!(
        labels.as_array().unwrap().iter().any(|l| l == "replica"),
        "{labels}"
    );
    assert_eq!(
        api_data(&store, "/api/v1/label/replica/values"),
        serde_json::json!(["a", "b"])
    );
    let only_b = format!(
        "/api/v1/label/replica/values?match[]={}",
        encode(r#"{replica="b"}"#)
    );
    assert_eq!(api_data(&store, &only_b), serde_json::json!(["b"]));

    // The query role over the store: each series once, without the replica
    // label, every sample from one replica (no interleaving).
    let q = format!("127.0.0.1:{}", free_port());
    let mut pq = start_role(
        "query",
        &q,
        &[
            format!("--endpoint={store}"),
            "--query.replica-label=replica".into(),
        ],
    );
    wait_ready(&mut pq, &q, Duration::from_secs(30));
    let deduped = api_data(&q, &raw("store_metric"));
    let (series_a, series_b) = (by_series(&want_a), by_series(&want_b));
    let got = by_series(&deduped);
    assert_eq!(got.len(), 3, "{deduped}");
    for (labels, values) in &got {
        assert!(!labels.contains("replica"), "{labels}");
        let from_a = series_a.get(labels) == Some(values);
        let from_b = series_b.get(labels) == Some(values);
        assert!(
            from_a || from_b,
            "{labels}: samples are neither all replica a's nor all b's"
        );
    }

    pq.terminate(Duration::from_secs(30));
    s.terminate(Duration::from_secs(30));
    pa.terminate(Duration::from_secs(30));
    pb.terminate(Duration::from_secs(30));
    drop(weed);
}
