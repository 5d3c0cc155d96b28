//! Block shipping: every block this node completes is uploaded to object
//! storage (Thanos sidecar's role, in the same binary), so history outlives
//! the local disk and other processes can read it from the bucket.
//!
//! One background thread with its own single-threaded async runtime does
//! all of it, so an upload never blocks ingestion, queries or compaction.
//! A sync lists the local blocks and uploads those not yet in the bucket,
//! oldest first: chunk segments, index, tombstones, then `meta.json` LAST
//! with a create-only put, carrying the node's external labels under
//! `thanos.labels`. A block whose `meta.json` is already in the bucket is
//! not uploaded again; a half-uploaded one (files but no `meta.json`, after
//! a crash) is uploaded again, overwriting its files. A failed upload is
//! retried with exponential backoff. What is shipped is kept in
//! `shipper.json` ([`state`], docs/format/shipper.md).
//!
//! Through [`crate::storage::ShipGate`] the database asks whether a block
//! is shipped before deleting, merging or rewriting it: local merges and
//! retention wait for the upload, so the bucket receives level-1 blocks
//! only (the compactor's job is to merge them there) and unshipped data is
//! never deleted. Owns `shipper.json` and the bucket's `<ulid>/` objects of
//! this node's blocks; reads block directories, never writes them.

pub mod objstore;
pub mod state;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use object_store::ObjectStore;
use parking_lot::{Condvar, Mutex, RwLock};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::bucket::{self, ThanosSection, Uploaded};
use crate::storage::block::BlockMeta;
use crate::storage::{Db, ShipGate};
use objstore::BucketConfig;
use state::{ShippedSet, StateError, SHIPPER_FILE};

/// What Thanos's `thanos.source` says of blocks uploaded by a node that
/// ingests: the sidecar's value, since Tidemark plays the sidecar's role
/// (Thanos's `metadata.SidecarSource`).
pub const THANOS_SOURCE: &str = "sidecar";
/// Name of a block's metadata object, uploaded last.
pub const META_FILE: &str = "meta.json";

/// A test hook called at each step of a block upload:
/// `shipper:chunks_uploaded`, `shipper:files_uploaded` (everything but
/// `meta.json`), `shipper:meta_uploaded`.
pub type ShipperHook = fn(&str);

/// How the shipper runs.
#[derive(Clone)]
pub struct ShipperOptions {
    /// The bucket and its key prefix.
    pub store: Arc<dyn ObjectStore>,
    /// Key prefix (no leading or trailing `/`; empty for none).
    pub prefix: String,
    /// Files above this many bytes go up as multipart uploads of this size.
    pub part_size: u64,
    /// The node's external labels, written to `thanos.labels`.
    pub external_labels: BTreeMap<String, String>,
    /// Time between syncs when nothing wakes the shipper.
    pub sync_interval: Duration,
    /// First pause after a failed upload; doubled on each failure.
    pub min_backoff: Duration,
    /// Longest pause between retries.
    pub max_backoff: Duration,
    /// Test hook ([`ShipperHook`]).
    pub crash_hook: Option<ShipperHook>,
}

impl ShipperOptions {
    /// Options for `bucket` with the default timings.
    ///
    /// # Errors
    /// When the bucket client cannot be built.
    pub fn new(
        bucket: &BucketConfig,
        external_labels: BTreeMap<String, String>,
    ) -> Result<Self, objstore::ConfigError> {
        Ok(Self {
            store: bucket.build()?,
            prefix: bucket.prefix.clone(),
            part_size: bucket.part_size(),
            external_labels,
            sync_interval: Duration::from_secs(30),
            min_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(300),
            crash_hook: None,
        })
    }
}

/// Why a block upload failed.
pub type ShipError = crate::bucket::Error;

/// Why the shipper did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// `shipper.json` exists but cannot be used.
    #[error("shipper state")]
    State(#[from] StateError),
    /// The shipper thread could not be created.
    #[error("starting the shipper thread")]
    Spawn(#[source] std::io::Error),
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

/// `tidemark_shipper_*` metrics. Registered whether or not shipping is on
/// (all zero when off), so dashboards and alerts have a series to read.
#[derive(Debug)]
pub struct ShipperMetrics {
    uploads: Family<ResultLabels, Counter>,
    uploaded_bytes: Counter,
    pending: Gauge,
    oldest_pending_age: Gauge<f64, AtomicU64>,
    last_success: Gauge<f64, AtomicU64>,
}

impl ShipperMetrics {
    /// Registers the metrics.
    pub fn register(registry: &mut Registry) -> Arc<Self> {
        let m = Self {
            uploads: Family::default(),
            uploaded_bytes: Counter::default(),
            pending: Gauge::default(),
            oldest_pending_age: Gauge::default(),
            last_success: Gauge::default(),
        };
        for result in ["success", "failure", "already_present"] {
            let _ = m.uploads.get_or_create(&ResultLabels { result });
        }
        registry.register(
            "tidemark_shipper_uploads",
            "Block uploads to object storage by result: success, failure (retried with backoff), already_present (meta.json was in the bucket).",
            m.uploads.clone(),
        );
        registry.register(
            "tidemark_shipper_uploaded_bytes",
            "Bytes of block files uploaded to object storage.",
            m.uploaded_bytes.clone(),
        );
        registry.register(
            "tidemark_shipper_pending_blocks",
            "Local blocks not yet in object storage (they are neither merged nor deleted locally until shipped).",
            m.pending.clone(),
        );
        registry.register(
            "tidemark_shipper_oldest_pending_block_age_seconds",
            "Seconds since the oldest block not yet in object storage was written; 0 when none is pending (the shipping lag).",
            m.oldest_pending_age.clone(),
        );
        registry.register(
            "tidemark_shipper_last_success_timestamp_seconds",
            "Unix time of the last block upload that succeeded.",
            m.last_success.clone(),
        );
        Arc::new(m)
    }

    fn count(&self, result: &'static str) {
        self.uploads.get_or_create(&ResultLabels { result }).inc();
    }

    /// Uploads with `result` so far (for tests and logs).
    pub fn uploads(&self, result: &'static str) -> u64 {
        self.uploads.get_or_create(&ResultLabels { result }).get()
    }

    /// Bytes of block files uploaded so far.
    pub fn uploaded_bytes(&self) -> u64 {
        self.uploaded_bytes.get()
    }

    /// Blocks pending at the last sync.
    pub fn pending(&self) -> i64 {
        self.pending.get()
    }
}

/// What the database sees of the shipper ([`ShipGate`]), and how the
/// shipper thread is woken and stopped. `shipped` is read by compaction
/// and written by the shipper thread only.
struct Gate {
    shipped: RwLock<ShippedSet>,
    /// Set by [`ShipGate::block_completed`], cleared by the thread.
    woken: Mutex<bool>,
    wake: Condvar,
    stop: AtomicBool,
}

impl ShipGate for Gate {
    fn is_shipped(&self, meta: &BlockMeta) -> bool {
        self.shipped.read().covers(meta)
    }

    fn block_completed(&self, _meta: &BlockMeta) {
        *self.woken.lock() = true;
        self.wake.notify_all();
    }
}

impl Gate {
    /// Sleeps until `deadline`, an early wake-up (if `wakeable`) or stop.
    fn sleep_until(&self, deadline: Instant, wakeable: bool) {
        let mut woken = self.woken.lock();
        loop {
            if self.stop.load(Ordering::Acquire) || (wakeable && *woken) {
                break;
            }
            if self.wake.wait_until(&mut woken, deadline).timed_out() {
                break;
            }
        }
        *woken = false;
    }
}

/// The running shipper. [`Shipper::stop`] ends its thread.
pub struct Shipper {
    gate: Arc<Gate>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    done: Arc<(Mutex<bool>, Condvar)>,
}

impl Shipper {
    /// Loads `shipper.json`, installs the gate in `db` (from now on no
    /// unshipped block is deleted, merged or rewritten) and starts the
    /// shipper thread, which syncs at once.
    ///
    /// # Errors
    /// When `shipper.json` exists but cannot be read, or the thread cannot
    /// be created.
    pub fn start(
        db: Arc<Db>,
        opts: ShipperOptions,
        metrics: Arc<ShipperMetrics>,
    ) -> Result<Self, StartError> {
        let shipped = ShippedSet::load(&db.dir().join(SHIPPER_FILE))?;
        let gate = Arc::new(Gate {
            shipped: RwLock::new(shipped),
            woken: Mutex::new(false),
            wake: Condvar::new(),
            stop: AtomicBool::new(false),
        });
        db.set_ship_gate(gate.clone());
        let done = Arc::new((Mutex::new(false), Condvar::new()));
        let worker = Worker {
            db,
            opts,
            metrics,
            gate: gate.clone(),
        };
        let finished = done.clone();
        let thread = std::thread::Builder::new()
            .name("shipper".into())
            .spawn(move || {
                worker.run();
                *finished.0.lock() = true;
                finished.1.notify_all();
            })
            .map_err(StartError::Spawn)?;
        Ok(Self {
            gate,
            thread: Mutex::new(Some(thread)),
            done,
        })
    }

    /// Wakes the shipper now (as a completed block does).
    pub fn wake(&self) {
        *self.gate.woken.lock() = true;
        self.gate.wake.notify_all();
    }

    /// Whether `meta`'s data is in the bucket.
    pub fn is_shipped(&self, meta: &BlockMeta) -> bool {
        self.gate.is_shipped(meta)
    }

    /// Stops the thread, waiting at most `within` for an upload in flight
    /// (a block cut short is uploaded again next start). Returns whether
    /// the thread ended in time.
    pub fn stop(&self, within: Duration) -> bool {
        self.gate.stop.store(true, Ordering::Release);
        self.wake();
        let (lock, cv) = &*self.done;
        let mut done = lock.lock();
        let deadline = Instant::now() + within;
        while !*done {
            if cv.wait_until(&mut done, deadline).timed_out() {
                break;
            }
        }
        let finished = *done;
        drop(done);
        if finished {
            if let Some(t) = self.thread.lock().take() {
                let _ = t.join();
            }
        }
        finished
    }
}

impl Drop for Shipper {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(5));
    }
}

struct Worker {
    db: Arc<Db>,
    opts: ShipperOptions,
    metrics: Arc<ShipperMetrics>,
    gate: Arc<Gate>,
}

impl Worker {
    fn run(self) {
        let rt = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                tracing::error!(error = %e, "shipper runtime cannot start; blocks are not shipped (and not deleted locally)");
                return;
            }
        };
        let mut backoff = self.opts.min_backoff;
        while !self.gate.stop.load(Ordering::Acquire) {
            match rt.block_on(self.sync()) {
                Ok(()) => {
                    backoff = self.opts.min_backoff;
                    self.gate
                        .sleep_until(Instant::now() + self.opts.sync_interval, true);
                }
                Err(e) => {
                    tracing::warn!(error = %format!("{:#}", anyhow::Error::from(e)), retry_in = ?backoff,
                        "shipping a block failed; retrying");
                    // Completed blocks do not cut the backoff short.
                    self.gate.sleep_until(Instant::now() + backoff, false);
                    backoff = backoff.saturating_mul(2).min(self.opts.max_backoff);
                }
            }
        }
    }

    fn hook(&self, step: &str) {
        if let Some(h) = self.opts.crash_hook {
            h(step);
        }
    }

    /// Uploads every local block not yet in the bucket, oldest first;
    /// stops at the first failure.
    async fn sync(&self) -> Result<(), ShipError> {
        let local = self.db.blocks();
        let state_path = self.db.dir().join(SHIPPER_FILE);
        {
            let mut shipped = self.gate.shipped.write();
            if shipped.retain_local(&local) {
                self.save(&shipped, &state_path);
            }
        }
        let mut pending: Vec<BlockMeta> = {
            let shipped = self.gate.shipped.read();
            // A block still awaiting its deferred checks may be damaged:
            // it is shipped once they pass (which wakes this loop).
            local
                .into_iter()
                .filter(|m| !shipped.covers(m) && !self.db.awaits_checks(&m.ulid))
                .collect()
        };
        pending.sort_by(|a, b| a.ulid.cmp(&b.ulid));
        while !pending.is_empty() {
            self.set_pending(&pending);
            if self.gate.stop.load(Ordering::Acquire) {
                return Ok(());
            }
            let m = pending.remove(0);
            match self.upload(&m).await {
                Ok(outcome) => {
                    match outcome {
                        Uploaded::Now { bytes } => {
                            self.metrics.count("success");
                            self.metrics.uploaded_bytes.inc_by(bytes);
                            tracing::info!(block = %m.ulid, bytes, "block shipped");
                        }
                        Uploaded::AlreadyPresent => {
                            self.metrics.count("already_present");
                            tracing::info!(block = %m.ulid, "block already in the bucket");
                        }
                    }
                    self.metrics.last_success.set(unix_now());
                    let mut shipped = self.gate.shipped.write();
                    shipped.add(&m);
                    self.save(&shipped, &state_path);
                }
                Err(e) => {
                    self.metrics.count("failure");
                    pending.insert(0, m);
                    self.set_pending(&pending);
                    return Err(e);
                }
            }
        }
        self.set_pending(&pending);
        Ok(())
    }

    fn save(&self, shipped: &ShippedSet, path: &Path) {
        if let Err(e) = shipped.save(path) {
            // The bucket has the blocks either way; a lost entry is found
            // there again (meta.json exists) on the next start.
            tracing::error!(error = %e, "writing shipper state failed");
        }
    }

    fn set_pending(&self, pending: &[BlockMeta]) {
        self.metrics.pending.set(pending.len() as i64);
        let oldest = pending
            .iter()
            .filter_map(|m| m.ulid.parse::<ulid::Ulid>().ok())
            .map(|u| u.timestamp_ms())
            .min();
        let age = oldest.map_or(0.0, |ms| (unix_now() - ms as f64 / 1000.0).max(0.0));
        self.metrics.oldest_pending_age.set(age);
    }

    async fn upload(&self, m: &BlockMeta) -> Result<Uploaded, ShipError> {
        let thanos = ThanosSection {
            labels: self.opts.external_labels.clone(),
            source: THANOS_SOURCE,
        };
        bucket::upload_block(
            &self.opts.store,
            &self.opts.prefix,
            &self.db.dir().join(&m.ulid),
            &m.ulid,
            self.opts.part_size,
            &thanos,
            &|step| self.hook(&format!("shipper:{step}")),
        )
        .await
    }
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}
