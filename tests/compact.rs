//! The compactor role (`tidemark compact`) against a real S3-compatible
//! server (SeaweedFS's `weed mini`, started here on 127.0.0.1). Blocks are
//! written by a real `Db` and uploaded by the real shipper, one stream per
//! set of external labels. Every check of the data goes through the store
//! role's own bucket sync into a `Db` and compares every sample (bits)
//! before and after; "not doubled" is checked on the blocks the store
//! serves: their `numSamples` add up to the samples answered, and no
//! source block is served twice.
//!
//! Covered: two streams merged separately, sources marked then deleted
//! after the delete delay (binary, one pass then `--wait` with metrics and
//! probes) while a running `tidemark store` answers the same throughout;
//! out-of-order overlapping blocks merged vertically; retention
//! deleting old blocks only; the compactor killed at each step of a merge
//! and of a deletion, then restarted, and the binary SIGKILLed mid-pass
//! again and again; hostile `meta.json`s skipped; bad
//! configs refused naming the field.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use common::http::{encode, get, metric};
use common::proc::{free_port, tidemark_bin, wait_ready, wait_until, Proc};
use common::weed::{runtime, s3_yaml, Weed};
use common::{one, series_labels};
use futures::StreamExt;
use object_store::path::Path as ObjectPath;
use object_store::ObjectStore;
use prometheus_client::registry::Registry;
use tidemark::bucket::{self, MetaRead};
use tidemark::compactor::{CompactMetrics, Compactor, CompactorOptions, PassReport};
use tidemark::model::Sample;
use tidemark::shipper::objstore::BucketConfig;
use tidemark::shipper::{Shipper, ShipperMetrics, ShipperOptions};
use tidemark::storage::wal::FsyncPolicy;
use tidemark::storage::{Db, Options};
use tidemark::store::{BucketStore, StoreMetrics, StoreOptions};

const STEP: i64 = 15_000;
const HOUR: i64 = 3_600_000;
/// 2023-11-14T00:00:00Z, a multiple of 6 h.
const T0: i64 = 1_699_920_000_000;
const SERIES: usize = 3;

/// The bucket YAML with key prefix `prefix` (each test its own).
fn yaml(weed: &Weed, prefix: &str) -> String {
    s3_yaml(&weed.endpoint()).replace("prefix: \"\"", &format!("prefix: {prefix}"))
}

fn store_for(weed: &Weed, prefix: &str) -> Arc<dyn ObjectStore> {
    BucketConfig::parse(&yaml(weed, prefix))
        .unwrap()
        .build()
        .unwrap()
}

fn stream(replica: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("cluster".to_string(), "eu".to_string()),
        ("replica".to_string(), replica.to_string()),
    ])
}

/// What the bucket holds under `prefix`: complete blocks (meta), prefixes
/// without `meta.json`, and marked blocks.
#[derive(Debug, Default)]
struct View {
    complete: BTreeMap<String, serde_json::Value>,
    partial: BTreeSet<String>,
    marked: BTreeSet<String>,
}

type Dump = BTreeMap<String, Vec<(i64, u64)>>;

/// One test's bucket: a key prefix on a SeaweedFS, and a directory for
/// the nodes, the store cache and the compactor's scratch.
struct Bucket<'a> {
    weed: &'a Weed,
    prefix: &'a str,
    dir: &'a Path,
    store: Arc<dyn ObjectStore>,
}

impl<'a> Bucket<'a> {
    fn new(weed: &'a Weed, prefix: &'a str, dir: &'a Path) -> Self {
        Self {
            weed,
            prefix,
            dir,
            store: store_for(weed, prefix),
        }
    }

    /// The compactor's `--data-dir`.
    fn data(&self) -> std::path::PathBuf {
        self.dir.join(format!("{}-compact", self.prefix))
    }

    fn opts(&self) -> CompactorOptions {
        opts_with(store_for(self.weed, self.prefix), self.prefix, &self.data())
    }

    /// Writes `[from, to)` of [`SERIES`] series named `metric` into a
    /// fresh `Db` (directory `node`), cuts blocks, and ships them (stream
    /// `replica`) with the real shipper. Returns the ULIDs shipped.
    fn ship(&self, node: &str, replica: &str, metric: &str, from: i64, to: i64) -> Vec<String> {
        let dir = self.dir.join(format!("{}-{node}", self.prefix));
        // No fsync per append: the blocks are what is tested.
        let db = Arc::new(Db::open(dir, common::options(FsyncPolicy::Never)).unwrap());
        let m = ShipperMetrics::register(&mut Registry::default());
        let opts = ShipperOptions {
            store: store_for(self.weed, self.prefix),
            prefix: self.prefix.to_string(),
            part_size: 64 << 20,
            external_labels: stream(replica),
            sync_interval: Duration::from_millis(100),
            min_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(500),
            crash_hook: None,
        };
        let shipper = Shipper::start(db.clone(), opts, m.clone()).unwrap();
        let mut t = from;
        while t < to {
            let batch: Vec<_> = (0..SERIES)
                .map(|n| {
                    let v = (t - T0) as f64 / 1000.0 + n as f64 * 0.25;
                    one(series_labels(metric, n), vec![Sample::new(t, v)])
                })
                .collect();
            let out = db.append(&batch).unwrap();
            assert!(out.is_complete(), "{:?}", out.rejected.first());
            t += STEP;
        }
        // Blocks cut from the head (level 1) are shipped; local merges of
        // shipped blocks are not.
        let want = db.compact().unwrap().head_blocks as u64;
        assert!(want > 0);
        wait_until("blocks shipped", Duration::from_secs(60), || {
            m.uploads("success") == want && m.pending() == 0
        });
        assert!(shipper.stop(Duration::from_secs(10)));
        let mut ulids: Vec<String> = db
            .blocks()
            .into_iter()
            .flat_map(|b| b.compaction.sources)
            .collect();
        ulids.sort();
        drop(shipper);
        Arc::try_unwrap(db).ok().unwrap().close().unwrap();
        ulids
    }

    fn view(&self) -> View {
        let (store, prefix) = (self.store.as_ref(), self.prefix);
        let rt = runtime();
        let objects: Vec<String> = rt.block_on(async {
            let root = ObjectPath::from(prefix);
            let mut s = store.list(Some(&root));
            let mut out = Vec::new();
            while let Some(o) = s.next().await {
                out.push(o.unwrap().location.to_string());
            }
            out
        });
        let mut by: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for o in objects {
            let rel = o.strip_prefix(&format!("{prefix}/")).unwrap().to_string();
            let (u, rest) = rel.split_once('/').unwrap();
            by.entry(u.to_string()).or_default().push(rest.to_string());
        }
        let mut v = View::default();
        for (u, files) in by {
            if files.iter().any(|f| f == "deletion-mark.json") {
                v.marked.insert(u.clone());
            }
            if files.iter().any(|f| f == "meta.json") {
                let body = self.get(&u, "meta.json");
                v.complete
                    .insert(u, serde_json::from_slice(&body).unwrap_or_default());
            } else {
                v.partial.insert(u);
            }
        }
        v
    }

    /// Object `rel` of block `ulid`.
    fn get(&self, ulid: &str, rel: &str) -> bytes::Bytes {
        let key = bucket::block_key(self.prefix, ulid, rel);
        runtime()
            .block_on(async { self.store.get(&key).await?.bytes().await })
            .unwrap()
    }

    /// Every sample the store role serves from the bucket (its own sync
    /// into a fresh cache), after checking nothing is served twice: the
    /// served blocks' sources are disjoint, and their `numSamples` add up
    /// to the samples answered.
    fn dump(&self) -> Dump {
        self.dump_with(true)
    }

    /// [`Bucket::dump`]; `strict: false` for blocks that overlap on
    /// purpose (the querier answers repeated samples once; their
    /// `numSamples` count them twice).
    fn dump_with(&self, strict: bool) -> Dump {
        let cache = self.dir.join(format!("{}-cache", self.prefix));
        let _ = std::fs::remove_dir_all(&cache);
        let opts = StoreOptions {
            store: store_for(self.weed, self.prefix),
            prefix: self.prefix.to_string(),
            sync_interval: Duration::from_secs(1),
            index_cache_bytes: 1 << 30,
            chunk_cache_bytes: 256 << 20,
        };
        let m = StoreMetrics::register(&mut Registry::default());
        // Opened before the Db: it prepares the cache directory.
        let store = {
            let _rt = runtime().enter();
            BucketStore::open(opts, &cache, m).unwrap()
        };
        let db = Arc::new(Db::open(&cache, Options::default()).unwrap());
        runtime().block_on(store.sync(&db)).unwrap();
        let mut seen = BTreeSet::new();
        let mut in_meta = 0u64;
        for b in db.blocks() {
            for s in &b.compaction.sources {
                assert!(seen.insert(s.clone()), "source {s} served twice");
            }
            in_meta += b.stats.num_samples;
        }
        let dump = common::dump(&db);
        let answered: usize = dump.values().map(Vec::len).sum();
        if strict {
            assert_eq!(in_meta, answered as u64, "samples doubled or lost");
        }
        Arc::try_unwrap(db).ok().unwrap().close().unwrap();
        dump
    }
}

/// Compactor options for tests: no delays, 2 h ranges up to 14 d.
fn opts_with(store: Arc<dyn ObjectStore>, prefix: &str, data: &Path) -> CompactorOptions {
    CompactorOptions {
        store,
        prefix: prefix.to_string(),
        part_size: 64 << 20,
        data_dir: data.to_path_buf(),
        delete_delay: Duration::ZERO,
        retention: Duration::ZERO,
        consistency_delay: Duration::ZERO,
        block_range: Duration::from_secs(7200),
        max_block_duration: Duration::from_secs(14 * 24 * 3600),
        partial_age: Duration::ZERO,
        crash_hook: None,
    }
}

fn pass(c: &mut Compactor) -> PassReport {
    runtime().block_on(c.pass(SystemTime::now())).unwrap()
}

fn compactor(o: CompactorOptions) -> Compactor {
    Compactor::new(o, CompactMetrics::register(&mut Registry::default()))
}

/// `tidemark compact` over the bucket in `cfg` with scratch `data`,
/// HTTP on `addr`, no consistency delay, and `extra` flags.
fn compact_cmd(cfg: &Path, data: &Path, addr: &str, extra: &[&str]) -> Command {
    let mut cmd = Command::new(tidemark_bin());
    cmd.arg("compact")
        .arg(format!("--objstore.config.file={}", cfg.display()))
        .arg(format!("--data-dir={}", data.display()))
        .arg(format!("--web.listen-address={addr}"))
        .arg("--consistency-delay=0s")
        .args(extra);
    cmd
}

/// Runs `tidemark compact` once (no `--wait`) and returns its exit
/// status and output (logs go to stdout, clap's errors to stderr).
fn compact_once(cfg: &Path, data: &Path, extra: &[&str]) -> (bool, String) {
    let addr = format!("127.0.0.1:{}", free_port());
    let out = compact_cmd(cfg, data, &addr, extra).output().unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn level(m: &serde_json::Value) -> u64 {
    m["compaction"]["level"].as_u64().unwrap_or(0)
}

fn sources(m: &serde_json::Value) -> BTreeSet<String> {
    m["compaction"]["sources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn two_streams_merge_apart_sources_marked_then_deleted_after_the_delay() {
    let tmp = tempfile::tempdir().unwrap();
    let weed = Weed::start(&tmp.path().join("weed"));
    let prefix = "two";
    let b = Bucket::new(&weed, prefix, tmp.path());
    // 12 h per stream: five 2 h blocks shipped (the head keeps the rest).
    let a = b.ship("a", "a", "m_a", T0, T0 + 12 * HOUR);
    let bb = b.ship("b", "b", "m_b", T0, T0 + 12 * HOUR);
    assert_eq!((a.len(), bb.len()), (5, 5));
    let before = b.dump();
    assert_eq!(before.len(), 2 * SERIES);

    let cfg = tmp.path().join("bucket.yml");
    std::fs::write(&cfg, yaml(&weed, prefix)).unwrap();
    // A running store role answers the same all along, however its syncs
    // fall between the compactor's steps.
    let watcher = StoreWatcher::start(&cfg, &tmp.path().join("store-cache"));
    let data = b.data();
    let (ok, log) = compact_once(&cfg, &data, &["--delete-delay=3s"]);
    assert!(ok, "{log}");
    let v = b.view();
    // Per stream: [0,6 h) merged (the three first blocks); [6,8) and
    // [8,10) wait for more data.
    let merged: Vec<(&String, &serde_json::Value)> =
        v.complete.iter().filter(|(_, m)| level(m) == 2).collect();
    assert_eq!(merged.len(), 2, "{:?}", v.complete.keys());
    for (u, m) in &merged {
        let src = sources(m);
        let (stream_ulids, replica) = if src.is_subset(&a.iter().cloned().collect()) {
            (&a, "a")
        } else {
            (&bb, "b")
        };
        let want: BTreeSet<String> = stream_ulids[..3].iter().cloned().collect();
        assert_eq!(src, want, "{u}: sources of one stream only");
        assert_eq!(m["thanos"]["labels"], serde_json::json!(stream(replica)));
        assert_eq!(m["thanos"]["source"], "compactor");
        assert_eq!(m["compaction"]["parents"].as_array().unwrap().len(), 3);
        assert_eq!(
            (m["minTime"].as_i64(), m["maxTime"].as_i64()),
            (Some(T0), Some(T0 + 6 * HOUR))
        );
    }
    let marked: BTreeSet<String> = a[..3].iter().chain(&bb[..3]).cloned().collect();
    assert_eq!(v.marked, marked);
    assert!(v.partial.is_empty(), "{:?}", v.partial);
    let mark: serde_json::Value =
        serde_json::from_slice(&b.get(&a[0], "deletion-mark.json")).unwrap();
    assert_eq!(mark["id"], a[0].as_str());
    assert_eq!(mark["version"], 1);
    assert_eq!(b.dump(), before);

    // Before the delay: nothing deleted.
    let (ok, log) = compact_once(&cfg, &data, &["--delete-delay=1h"]);
    assert!(ok, "{log}");
    assert_eq!(b.view().marked, marked);

    // With --wait: the delay passes, the six sources go; probes and
    // metrics answer meanwhile.
    std::thread::sleep(Duration::from_secs(3));
    let addr = format!("127.0.0.1:{}", free_port());
    let flags = [
        "--wait",
        "--wait-interval=500ms",
        "--delete-delay=3s",
        "--log-level=warn",
    ];
    let child = compact_cmd(&cfg, &data, &addr, &flags)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut p = Proc(child, "tidemark compact");
    wait_until("sources deleted", Duration::from_secs(60), || {
        get(&addr, "/metrics").is_some_and(|(_, body)| {
            body.contains("tidemark_compact_blocks_deleted_total{kind=\"block\"} 6")
        })
    });
    assert_eq!(get(&addr, "/-/healthy").map(|r| r.0), Some(200));
    assert_eq!(get(&addr, "/-/ready").map(|r| r.0), Some(200));
    let (_, metrics) = get(&addr, "/metrics").unwrap();
    for want in [
        "tidemark_compact_passes_total{result=\"success\"}",
        "tidemark_compact_failures_total{op=\"merge\"} 0",
        "tidemark_compact_last_success_timestamp_seconds",
        "tidemark_compact_hostile_blocks 0",
    ] {
        assert!(metrics.contains(want), "{want}:\n{metrics}");
    }
    assert!(!metrics.contains("tidemark_store_"), "{metrics}");
    p.terminate(Duration::from_secs(10));
    let v = b.view();
    assert!(v.marked.is_empty() && v.partial.is_empty(), "{v:?}");
    assert_eq!(v.complete.len(), 6, "{:?}", v.complete.keys());
    assert_eq!(b.dump(), before);
    // The store serves the merged blocks (2 merged + 2 x 2 level 1).
    wait_until(
        "the store on the merged blocks",
        Duration::from_secs(30),
        || metric(&watcher.addr, "tidemark_store_blocks_loaded") == Some(6.0),
    );
    let checks = watcher.stop();
    assert!(checks >= 10, "only {checks} store answers compared");
}

/// `tidemark store` over a bucket, queried in a loop from a thread; every
/// answer must equal the first.
struct StoreWatcher {
    addr: String,
    _proc: Proc,
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<usize>>,
}

impl StoreWatcher {
    fn start(cfg: &Path, cache: &Path) -> Self {
        let addr = format!("127.0.0.1:{}", free_port());
        let child = Command::new(tidemark_bin())
            .arg("store")
            .args(["--listen", &addr, "--log-level", "warn"])
            .arg(format!("--objstore.config.file={}", cfg.display()))
            .arg(format!("--store.cache-dir={}", cache.display()))
            .arg("--store.sync-interval=200ms")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut p = Proc(child, "tidemark store");
        wait_ready(&mut p, &addr, Duration::from_secs(60));
        // Per series, samples and their sum per hour over the shipped 10 h.
        let paths: Vec<String> = ["count_over_time", "sum_over_time"]
            .iter()
            .flat_map(|f| ["m_a", "m_b"].map(|m| format!("{f}({m}[1h])")))
            .map(|q| {
                format!(
                    "/api/v1/query_range?query={}&start={}&end={}&step=1800",
                    encode(&q),
                    (T0 + HOUR) / 1000,
                    (T0 + 10 * HOUR) / 1000
                )
            })
            .collect();
        let first: Vec<(u16, String)> = paths.iter().map(|p| get(&addr, p).unwrap()).collect();
        for (status, body) in &first {
            assert_eq!(*status, 200, "{body}");
            assert_eq!(body.matches("\"metric\"").count(), SERIES, "{body}");
        }
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (a, s) = (addr.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut n = 0;
            while !s.load(std::sync::atomic::Ordering::Relaxed) {
                for (p, want) in paths.iter().zip(&first) {
                    let got = get(&a, p).unwrap();
                    assert_eq!(&got, want, "the store's answer changed");
                }
                n += 1;
                std::thread::sleep(Duration::from_millis(50));
            }
            n
        });
        Self {
            addr,
            _proc: p,
            stop,
            thread: Some(thread),
        }
    }

    /// Stops querying; returns how many answers were compared.
    fn stop(mut self) -> usize {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        match self.thread.take().unwrap().join() {
            Ok(n) => n,
            Err(e) => std::panic::resume_unwind(e),
        }
    }
}

#[test]
fn overlapping_blocks_of_one_stream_merge_vertically_repeats_once() {
    let tmp = tempfile::tempdir().unwrap();
    let weed = Weed::start(&tmp.path().join("weed"));
    let prefix = "vertical";
    let b = Bucket::new(&weed, prefix, tmp.path());
    // Three writers of one stream, each shipping a block of the same 2 h,
    // as out-of-order blocks land: `m` from two (the second's block
    // repeats the first's samples of [1 h, 2 h)), `n` from the third.
    let first = b.ship("x", "a", "m", T0, T0 + 3 * HOUR + HOUR / 2);
    let second = b.ship("y", "a", "m", T0 + HOUR, T0 + 4 * HOUR + HOUR / 2);
    let third = b.ship("z", "a", "n", T0, T0 + 3 * HOUR + HOUR / 2);
    assert_eq!((first.len(), second.len(), third.len()), (1, 1, 1));
    let before = b.dump_with(false);
    let mut c = compactor(b.opts());
    let r = pass(&mut c);
    assert_eq!((r.merged, r.marked, r.failures), (1, 3, 0), "{r:?}");
    let v = b.view();
    let merged: Vec<&serde_json::Value> = v.complete.values().filter(|m| level(m) == 2).collect();
    assert_eq!(merged.len(), 1);
    let want: BTreeSet<String> = [&first[0], &second[0], &third[0]]
        .into_iter()
        .cloned()
        .collect();
    assert_eq!(sources(merged[0]), want);
    // The merged block holds each repeated sample once.
    assert_eq!(b.dump(), before);
    let r = pass(&mut c);
    assert_eq!((r.deleted, r.merged), (3, 0), "{r:?}");
    assert_eq!(b.view().complete.len(), 1);
    assert_eq!(b.dump(), before);
}

#[test]
fn retention_deletes_old_blocks_only() {
    let tmp = tempfile::tempdir().unwrap();
    let weed = Weed::start(&tmp.path().join("weed"));
    let prefix = "retention";
    let b = Bucket::new(&weed, prefix, tmp.path());
    // 2023 data, and data of the last day (aligned to 2 h).
    let old = b.ship("old", "a", "old", T0, T0 + 4 * HOUR);
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let recent_start = now - now.rem_euclid(2 * HOUR) - 24 * HOUR;
    let recent = b.ship("new", "b", "new", recent_start, recent_start + 4 * HOUR);
    assert_eq!((old.len(), recent.len()), (1, 1));
    let cfg = tmp.path().join("bucket.yml");
    std::fs::write(&cfg, yaml(&weed, prefix)).unwrap();
    let data = b.data();
    let flags = ["--retention.resolution-raw=365d", "--delete-delay=0s"];
    let (ok, log) = compact_once(&cfg, &data, &flags);
    assert!(ok, "{log}");
    let v = b.view();
    assert_eq!(v.marked, old.iter().cloned().collect());
    let (ok, log) = compact_once(&cfg, &data, &flags);
    assert!(ok, "{log}");
    let v = b.view();
    assert_eq!(v.complete.keys().cloned().collect::<Vec<_>>(), recent);
    assert!(v.marked.is_empty() && v.partial.is_empty(), "{v:?}");
    let dump = b.dump();
    assert!(dump.keys().all(|k| k.contains("new")), "{:?}", dump.keys());
    assert_eq!(dump.len(), SERIES);
}

const CHILD_PREFIX: &str = "TIDEMARK_COMPACT_CHILD_PREFIX";
const CHILD_ENDPOINT: &str = "TIDEMARK_COMPACT_CHILD_ENDPOINT";
const CHILD_DATA: &str = "TIDEMARK_COMPACT_CHILD_DATA";

/// Not a test on its own: the compactor that crashes at a step.
#[test]
fn compact_crash_child() {
    let (Ok(prefix), Ok(endpoint), Ok(data)) = (
        std::env::var(CHILD_PREFIX),
        std::env::var(CHILD_ENDPOINT),
        std::env::var(CHILD_DATA),
    ) else {
        return;
    };
    let yaml = s3_yaml(&endpoint).replace("prefix: \"\"", &format!("prefix: {prefix}"));
    let store = BucketConfig::parse(&yaml).unwrap().build().unwrap();
    let mut o = opts_with(store, &prefix, Path::new(&data));
    // Abandoned uploads stay until the restart, which checks them.
    o.partial_age = Duration::from_secs(3600);
    o.crash_hook = Some(common::crash::abort_at);
    let mut c = compactor(o);
    for _ in 0..3 {
        pass(&mut c);
    }
    println!("child finished without crashing");
}

#[test]
fn killed_at_any_step_then_restarted_loses_and_doubles_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let weed = Weed::start(&tmp.path().join("weed"));
    let steps = [
        ("downloaded", "compact:downloaded"),
        ("written", "compact-block:finished"),
        ("chunks", "compact:chunks_uploaded"),
        ("files", "compact:files_uploaded"),
        ("meta", "compact:meta_uploaded"),
        ("marked", "compact:first_marked"),
        ("deleting", "compact:meta_deleted"),
    ];
    for (prefix, step) in steps {
        let b = Bucket::new(&weed, prefix, tmp.path());
        let shipped = b.ship(prefix, "a", "m", T0, T0 + 12 * HOUR);
        assert_eq!(shipped.len(), 5);
        let before = b.dump();
        assert_eq!(before.len(), SERIES);
        let data = b.data();
        let endpoint = weed.endpoint();
        let env: [(&str, &OsStr); 3] = [
            (CHILD_PREFIX, prefix.as_ref()),
            (CHILD_ENDPOINT, endpoint.as_ref()),
            (CHILD_DATA, data.as_ref()),
        ];
        common::crash::run_child("compact_crash_child", &env, step);
        // Right after the crash: readers see every sample once.
        let v = b.view();
        assert_eq!(b.dump(), before, "{step}: {v:?}");
        match step {
            "compact:chunks_uploaded" | "compact:files_uploaded" => {
                assert_eq!(v.partial.len(), 1, "{step}: {v:?}");
                assert!(v.marked.is_empty(), "{step}: {v:?}");
            }
            "compact:meta_uploaded" => assert!(v.marked.is_empty(), "{v:?}"),
            "compact:first_marked" => assert_eq!(v.marked.len(), 1, "{v:?}"),
            "compact:meta_deleted" => {
                assert_eq!(v.partial.len(), 1, "{v:?}");
                assert_eq!(v.marked.len(), 3, "{v:?}");
            }
            _ => assert!(v.partial.is_empty() && v.marked.is_empty(), "{step}: {v:?}"),
        }
        // Restart: passes until nothing is left to do.
        let mut c = compactor(b.opts());
        for _ in 0..3 {
            let r = pass(&mut c);
            assert_eq!(r.failures, 0, "{step}: {r:?}");
        }
        let v = b.view();
        assert!(v.partial.is_empty() && v.marked.is_empty(), "{step}: {v:?}");
        let levels: Vec<u64> = v.complete.values().map(level).collect();
        assert_eq!(
            levels.iter().filter(|l| **l == 2).count(),
            1,
            "{step}: {v:?}"
        );
        assert_eq!(v.complete.len(), 3, "{step}: {v:?}");
        assert_eq!(b.dump(), before, "{step}");
    }
}

#[test]
fn binary_sigkilled_again_and_again_mid_pass_loses_and_doubles_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let weed = Weed::start(&tmp.path().join("weed"));
    let prefix = "sigkill";
    let b = Bucket::new(&weed, prefix, tmp.path());
    // 24 h per stream: eleven blocks, merged over two levels.
    assert_eq!(b.ship("a", "a", "m_a", T0, T0 + 24 * HOUR).len(), 11);
    assert_eq!(b.ship("b", "b", "m_b", T0, T0 + 24 * HOUR).len(), 11);
    let before = b.dump();
    let cfg = tmp.path().join("bucket.yml");
    std::fs::write(&cfg, yaml(&weed, prefix)).unwrap();
    for i in 0..6u64 {
        let addr = format!("127.0.0.1:{}", free_port());
        let flags = [
            "--wait",
            "--wait-interval=100ms",
            "--delete-delay=0s",
            "--log-level=warn",
        ];
        let mut child = compact_cmd(&cfg, &b.data(), &addr, &flags)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(200 + 200 * i));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        assert_eq!(b.dump(), before, "after kill {i}: {:?}", b.view());
    }
    // Whatever the kills left, passes finish the job.
    let mut c = compactor(b.opts());
    for _ in 0..4 {
        assert_eq!(pass(&mut c).failures, 0);
    }
    let v = b.view();
    assert!(v.partial.is_empty() && v.marked.is_empty(), "{v:?}");
    let levels: BTreeSet<u64> = v.complete.values().map(level).collect();
    assert!(levels.contains(&3), "{v:?}");
    assert_eq!(b.dump(), before);
}

#[test]
fn hostile_meta_json_is_skipped_never_a_panic_and_bad_configs_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let weed = Weed::start(&tmp.path().join("weed"));
    let prefix = "hostile";
    let b = Bucket::new(&weed, prefix, tmp.path());
    let store = b.store.clone();
    let shipped = b.ship("a", "a", "m", T0, T0 + 12 * HOUR);
    let before = b.dump();
    let bad = [
        ("01HAAAAAAAAAAAAAAAAAAAAAA1", b"{not json".to_vec()),
        ("01HAAAAAAAAAAAAAAAAAAAAAA2", vec![b' '; 5 << 20]),
        (
            "01HAAAAAAAAAAAAAAAAAAAAAA3",
            serde_json::json!({"ulid": "01HAAAAAAAAAAAAAAAAAAAAAA3", "minTime": T0 + HOUR, "maxTime": T0,
                "version": 1, "compaction": {"level": 5, "sources": [shipped[0]]},
                "thanos": {"labels": stream("a")}})
            .to_string()
            .into_bytes(),
        ),
    ];
    // Well formed, but of another stream: it never supersedes stream a's
    // block it names (nor is it merged: alone in its stream).
    let foreign = "01HAAAAAAAAAAAAAAAAAAAAAA4";
    let foreign_meta = serde_json::json!({"ulid": foreign, "minTime": T0, "maxTime": T0 + 12 * HOUR,
        "version": 1, "compaction": {"level": 5, "sources": [shipped[0]]},
        "thanos": {"labels": stream("b")}});
    let rt = runtime();
    for (u, body) in &bad {
        rt.block_on(store.put(&bucket::block_key(prefix, u, "index"), "x".into()))
            .unwrap();
        rt.block_on(store.put(
            &bucket::block_key(prefix, u, "meta.json"),
            body.clone().into(),
        ))
        .unwrap();
        let read = rt
            .block_on(bucket::read_meta(store.as_ref(), prefix, u))
            .unwrap();
        assert!(matches!(read, MetaRead::Hostile(_)), "{u}: {read:?}");
    }
    rt.block_on(store.put(
        &bucket::block_key(prefix, foreign, "meta.json"),
        foreign_meta.to_string().into(),
    ))
    .unwrap();
    let mut c = compactor(b.opts());
    for _ in 0..2 {
        let r = pass(&mut c);
        assert_eq!((r.hostile, r.failures), (3, 0), "{r:?}");
    }
    let v = b.view();
    for (u, _) in &bad {
        assert!(
            v.complete.contains_key(*u) && !v.marked.contains(*u),
            "{u}: {v:?}"
        );
    }
    assert!(v.complete.contains_key(foreign) && !v.marked.contains(foreign));
    // The real blocks merged as if the hostile ones were not there.
    let merged: Vec<_> = v.complete.values().filter(|m| level(m) == 2).collect();
    assert_eq!(merged.len(), 1);
    assert!(sources(merged[0]).contains(&shipped[0]));
    assert_eq!(b.dump(), before);

    // Bad configs: the field or flag is named, nothing runs.
    let cfg = tmp.path().join("bad.yml");
    std::fs::write(&cfg, yaml(&weed, prefix).replace("bucket:", "bukket:")).unwrap();
    let (ok, log) = compact_once(&cfg, &tmp.path().join("c2"), &[]);
    assert!(!ok && log.contains("bukket"), "{log}");
    std::fs::write(&cfg, "type: S3\nconfig:\n  endpoint: h:1\n").unwrap();
    let (ok, log) = compact_once(&cfg, &tmp.path().join("c2"), &[]);
    assert!(!ok && log.contains("config.bucket"), "{log}");
    let (ok, log) = compact_once(&cfg, &tmp.path().join("c2"), &["--delete-delay=soon"]);
    assert!(!ok && log.contains("--delete-delay"), "{log}");
    let out = Command::new(tidemark_bin())
        .arg("compact")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("--objstore.config.file"),
        "{err}"
    );
}
