//! The store role's bucket sync (`tidemark store`, phase 0): keeps a local
//! cache directory holding every complete, not superseded block of the
//! bucket, and has a read-only [`Db`] on that directory serve them.
//!
//! A sync lists the bucket's `<ulid>/` prefixes, reads each `meta.json`
//! (a prefix without one is a block still being uploaded, or abandoned,
//! and is ignored), drops blocks named as a parent or a source of another
//! complete block of a higher compaction level, of the same stream and
//! covering their range ([`crate::bucket::superseded`]: a block the
//! compactor merged is dropped as soon as the merged block is complete,
//! before its deletion mark), downloads each wanted
//! block not yet cached WHOLE into `<ulid>.download/` then renames it into
//! place (so a half download is never opened), deletes cached blocks the
//! bucket no longer wants, and calls [`Db::reload_blocks`].
//!
//! Downloads run on the server's runtime and write the cache with blocking
//! file calls, a piece ([`crate::bucket::PIECE_BYTES`]) at a time. Deleting a cached
//! block under a running query is safe: blocks are memory-mapped, and the
//! query holds its `Arc<Block>`.
//!
//! Phase 0 caches whole blocks; the bounded cache of indexes and chunk
//! ranges (ranged GETs) that issue 20 asks for is phase 1 (README,
//! "Scaling out"). Owns the cache directory's `<ulid>/` and `*.download`
//! entries; never writes to the bucket.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use object_store::ObjectStore;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::bucket::{self, is_block_name, superseded, BucketMeta, MetaRead, DOWNLOAD_SUFFIX};
use crate::storage::Db;

/// Suffix of a cached block directory being deleted.
const DELETE_SUFFIX: &str = ".delete";

/// Why a sync failed. The cache keeps serving what it has.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// A bucket operation failed.
    #[error("{op} {key}: {source}")]
    Bucket {
        /// What was being done.
        op: &'static str,
        /// The object key or prefix.
        key: String,
        /// The client's error.
        #[source]
        source: object_store::Error,
    },
    /// A local file operation on the cache failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Reading or downloading a block failed.
    #[error(transparent)]
    Block(#[from] bucket::Error),
    /// Loading the cached blocks failed.
    #[error("loading cached blocks: {0}")]
    Storage(#[from] crate::storage::Error),
}

/// `tidemark_store_*` metrics (registered in the store role only).
#[derive(Debug)]
pub struct StoreMetrics {
    sync_failures: Counter,
    blocks_loaded: Gauge,
    last_success: Gauge<f64, AtomicU64>,
    downloaded_bytes: Counter,
}

impl StoreMetrics {
    /// Registers the metrics.
    pub fn register(registry: &mut Registry) -> Arc<Self> {
        let m = Self {
            sync_failures: Counter::default(),
            blocks_loaded: Gauge::default(),
            last_success: Gauge::default(),
            downloaded_bytes: Counter::default(),
        };
        registry.register(
            "tidemark_store_sync_failures",
            "Bucket syncs that failed (the blocks already cached are still served).",
            m.sync_failures.clone(),
        );
        registry.register(
            "tidemark_store_blocks_loaded",
            "Blocks from the bucket that this store serves.",
            m.blocks_loaded.clone(),
        );
        registry.register(
            "tidemark_store_last_successful_sync_timestamp_seconds",
            "Unix time of the last bucket sync that succeeded.",
            m.last_success.clone(),
        );
        registry.register(
            "tidemark_store_downloaded_bytes",
            "Bytes of block files downloaded from the bucket.",
            m.downloaded_bytes.clone(),
        );
        Arc::new(m)
    }

    /// Failed syncs so far.
    pub fn sync_failures(&self) -> u64 {
        self.sync_failures.get()
    }
}

/// The bucket and how to sync it.
#[derive(Clone)]
pub struct StoreOptions {
    /// The bucket client.
    pub store: Arc<dyn ObjectStore>,
    /// Key prefix (no leading or trailing `/`; empty for none).
    pub prefix: String,
    /// Time between syncs (and between tries of the first one).
    pub sync_interval: Duration,
}

/// What one sync did.
#[derive(Debug, Default)]
pub struct SyncReport {
    /// Complete blocks in the bucket, superseded ones excluded.
    pub wanted: usize,
    /// Blocks downloaded by this sync.
    pub downloaded: usize,
    /// Cached blocks deleted (no longer wanted).
    pub deleted: usize,
    /// Prefixes without `meta.json` (ignored).
    pub incomplete: usize,
}

/// One bucket sync into `db`'s directory; see the module doc.
///
/// # Errors
/// On the first bucket or cache error; what was downloaded before it is
/// kept and served.
pub async fn sync(
    opts: &StoreOptions,
    db: &Arc<Db>,
    metrics: &StoreMetrics,
) -> Result<SyncReport, SyncError> {
    let dir = db.dir().to_path_buf();
    remove_leftovers(&dir)?;
    let mut report = SyncReport::default();
    let root = bucket::root(&opts.prefix);
    let listing = opts
        .store
        .list_with_delimiter(root.as_ref())
        .await
        .map_err(|source| SyncError::Bucket {
            op: "LIST",
            key: opts.prefix.clone(),
            source,
        })?;
    let mut complete: BTreeMap<String, BucketMeta> = BTreeMap::new();
    for p in listing.common_prefixes {
        let Some(ulid) = p.filename().map(str::to_string) else {
            continue;
        };
        if !is_block_name(&ulid) {
            continue;
        }
        match bucket::read_meta(opts.store.as_ref(), &opts.prefix, &ulid).await? {
            MetaRead::Complete(m) => {
                complete.insert(ulid, *m);
            }
            MetaRead::Missing => report.incomplete += 1,
            MetaRead::Hostile(why) => {
                tracing::warn!(block = %ulid, problem = %why, "meta.json cannot be trusted; block ignored");
            }
        }
    }
    let superseded = superseded(&complete);
    let wanted: BTreeSet<String> = complete
        .keys()
        .filter(|u| !superseded.contains(*u))
        .cloned()
        .collect();
    report.wanted = wanted.len();
    for ulid in &wanted {
        if dir.join(ulid).is_dir() {
            continue;
        }
        let bytes = bucket::download_block(opts.store.as_ref(), &opts.prefix, ulid, &dir).await?;
        metrics.downloaded_bytes.inc_by(bytes);
        tracing::info!(block = %ulid, bytes, "block downloaded from the bucket");
        report.downloaded += 1;
    }
    for cached in cached_blocks(&dir)? {
        if !wanted.contains(&cached) {
            delete_dir(&dir, &cached)?;
            tracing::info!(block = %cached, "cached block no longer in the bucket (or superseded); dropped");
            report.deleted += 1;
        }
    }
    let db2 = db.clone();
    let reload = tokio::task::spawn_blocking(move || db2.reload_blocks())
        .await
        .map_err(|e| SyncError::Io {
            op: "reload task",
            path: dir.clone(),
            source: std::io::Error::other(e.to_string()),
        })??;
    for (path, why) in &reload.failed {
        // Downloaded again by the next sync.
        tracing::error!(block = %path.display(), error = %why, "downloaded block does not open; deleting it from the cache");
        if let Some(name) = path.file_name().and_then(|n| n.to_str()) {
            delete_dir(&dir, name)?;
        }
    }
    metrics.blocks_loaded.set(db.blocks().len() as i64);
    Ok(report)
}

/// Block directories in the cache.
fn cached_blocks(dir: &Path) -> Result<Vec<String>, SyncError> {
    let rd = std::fs::read_dir(dir).map_err(|source| SyncError::Io {
        op: "read cache directory",
        path: dir.to_path_buf(),
        source,
    })?;
    Ok(rd
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| is_block_name(n))
        .collect())
}

/// Removes `<dir>/<name>`: renamed first, so a crash midway leaves a
/// `*.delete` directory (removed by the next sync), never half a block.
fn delete_dir(dir: &Path, name: &str) -> Result<(), SyncError> {
    let from = dir.join(name);
    let to = dir.join(format!("{name}{DELETE_SUFFIX}"));
    std::fs::rename(&from, &to).map_err(|source| SyncError::Io {
        op: "rename block for deletion",
        path: from,
        source,
    })?;
    std::fs::remove_dir_all(&to).map_err(|source| SyncError::Io {
        op: "delete block",
        path: to,
        source,
    })
}

/// Removes `*.download` and `*.delete` directories left by a crash.
fn remove_leftovers(dir: &Path) -> Result<(), SyncError> {
    let rd = std::fs::read_dir(dir).map_err(|source| SyncError::Io {
        op: "read cache directory",
        path: dir.to_path_buf(),
        source,
    })?;
    for e in rd.filter_map(|e| e.ok()) {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.ends_with(DOWNLOAD_SUFFIX) || name.ends_with(DELETE_SUFFIX) {
            let p = e.path();
            std::fs::remove_dir_all(&p).map_err(|source| SyncError::Io {
                op: "remove leftover",
                path: p,
                source,
            })?;
        }
    }
    Ok(())
}

/// Syncs at start and every `opts.sync_interval` until `stop`; calls
/// `on_first_sync` once, after the first sync that succeeds (readiness).
/// A failed sync is logged and counted; the cache keeps serving.
pub async fn sync_loop(
    opts: StoreOptions,
    db: Arc<Db>,
    metrics: Arc<StoreMetrics>,
    on_first_sync: Box<dyn FnOnce() + Send>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut on_first_sync = Some(on_first_sync);
    loop {
        match sync(&opts, &db, &metrics).await {
            Ok(r) => {
                metrics.last_success.set(unix_now());
                if r.downloaded > 0 || r.deleted > 0 || on_first_sync.is_some() {
                    tracing::info!(
                        wanted = r.wanted,
                        downloaded = r.downloaded,
                        deleted = r.deleted,
                        incomplete = r.incomplete,
                        "bucket sync finished"
                    );
                }
                if let Some(f) = on_first_sync.take() {
                    f();
                }
            }
            Err(e) => {
                metrics.sync_failures.inc();
                tracing::error!(error = %e, "bucket sync failed; serving the blocks already cached, retrying next interval");
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(opts.sync_interval) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}
