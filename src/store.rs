//! The store role (`tidemark store`): serves the blocks of a bucket
//! without downloading them whole. A sync keeps the served block list
//! equal to the bucket's complete, not superseded blocks; each block is a
//! [`Block::open_remote`] whose index and chunks are read from the bucket
//! when a query needs them, through two bounded caches
//! ([`bucket_files`]): whole index files on local disk (`index_cache`,
//! `--store.index-cache-size`) and chunk ranges in memory (`chunk_cache`,
//! `--store.chunk-cache-size`), read with ranged GETs that coalesce
//! nearby chunks. Each block carries its `thanos.labels` as stream labels
//! ([`Block::with_stream_labels`]), as Thanos's store gateway adds a
//! block's external labels to its series: HA replicas' blocks stay
//! different series, and `{replica="a"}` selects one stream.
//!
//! A sync lists the bucket's `<ulid>/` prefixes and reads each `meta.json`
//! (a prefix without one is a block still being uploaded, or abandoned,
//! and is ignored), drops blocks named as a parent or a source of another
//! complete block of a higher compaction level, of the same stream and
//! covering their range ([`crate::bucket::superseded`]: a block the
//! compactor merged is dropped as soon as the merged block is complete,
//! before its deletion mark), and for each new wanted
//! block lists its files (their sizes), downloads its `tombstones` and
//! writes both small files into `<cache-dir>/blocks/<ulid>/` (through
//! `<ulid>.download/`, renamed into place). Blocks the bucket no longer
//! wants leave the served list ([`Db::update_blocks`]); a query that holds
//! one keeps reading it (its index stays mapped; its chunks are read from
//! the bucket while they are there).
//!
//! Owns the cache directory's `blocks/` and `index/` (emptied at start: the
//! caches start cold) and removes the whole-block directories phase 0
//! left; never writes to the bucket.

mod bucket_files;
mod chunk_cache;
mod index_cache;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use object_store::path::Path as ObjectPath;
use object_store::ObjectStore;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::bucket::{
    self, is_block_name, superseded, BucketMeta, MetaRead, Small, DOWNLOAD_SUFFIX,
};
use crate::storage::block::{Block, CHUNKS_DIR, INDEX_FILE, META_FILE, TOMBSTONES_FILE};
use crate::storage::Db;

use bucket_files::{BucketBlockFiles, BucketReader};
use chunk_cache::ChunkCache;
use index_cache::IndexCache;

/// Suffix of a cached block directory being deleted.
const DELETE_SUFFIX: &str = ".delete";
/// Largest `tombstones` file read; a larger one makes its block ignored.
const MAX_TOMBSTONES_BYTES: u64 = 64 << 20;
/// Directory of the served blocks' small files, under the cache directory.
const BLOCKS_DIR: &str = "blocks";
/// Directory of the cached index files, under the cache directory.
const INDEX_DIR: &str = "index";

/// Why a sync (or a bucket read) failed. The store keeps serving what it
/// has.
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
    /// A block in the bucket cannot be served as it is (ignored until it
    /// changes; the other blocks are served).
    #[error("block {ulid} in the bucket: {reason}")]
    BadBlock {
        /// The block.
        ulid: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A bucket request task ended without an answer.
    #[error("bucket request task: {0}")]
    Task(String),
    /// Reading a small object (a `meta.json`) failed.
    #[error(transparent)]
    Block(#[from] bucket::Error),
}

/// `tidemark_store_*` metrics (registered in the store role only).
#[derive(Debug)]
pub struct StoreMetrics {
    sync_failures: Counter,
    blocks_loaded: Gauge,
    blocks_ignored: Gauge,
    last_success: Gauge<f64, AtomicU64>,
    downloaded_bytes: Counter,
    index_cache_hits: Counter,
    index_cache_misses: Counter,
    index_cache_evictions: Counter,
    index_cache_bytes: Gauge,
    index_fetched_bytes: Counter,
    chunk_cache_hits: Counter,
    chunk_cache_misses: Counter,
    chunk_cache_evictions: Counter,
    chunk_cache_bytes: Gauge,
    chunk_fetch_ranges: Counter,
    chunk_fetched_bytes: Counter,
    bucket_read_failures: Counter,
}

impl StoreMetrics {
    /// Registers the metrics.
    pub fn register(registry: &mut Registry) -> Arc<Self> {
        let m = Self {
            sync_failures: Counter::default(),
            blocks_loaded: Gauge::default(),
            blocks_ignored: Gauge::default(),
            last_success: Gauge::default(),
            downloaded_bytes: Counter::default(),
            index_cache_hits: Counter::default(),
            index_cache_misses: Counter::default(),
            index_cache_evictions: Counter::default(),
            index_cache_bytes: Gauge::default(),
            index_fetched_bytes: Counter::default(),
            chunk_cache_hits: Counter::default(),
            chunk_cache_misses: Counter::default(),
            chunk_cache_evictions: Counter::default(),
            chunk_cache_bytes: Gauge::default(),
            chunk_fetch_ranges: Counter::default(),
            chunk_fetched_bytes: Counter::default(),
            bucket_read_failures: Counter::default(),
        };
        let counters: [(&str, &str, &Counter); 12] = [
            ("tidemark_store_sync_failures", "Bucket syncs that failed (the blocks already served still are).", &m.sync_failures),
            ("tidemark_store_downloaded_bytes", "Bytes of small block files (meta.json, tombstones) downloaded by syncs.", &m.downloaded_bytes),
            ("tidemark_store_index_cache_hits", "Block index reads answered by the index cache.", &m.index_cache_hits),
            ("tidemark_store_index_cache_misses", "Block index reads that downloaded the index.", &m.index_cache_misses),
            ("tidemark_store_index_cache_evictions", "Indexes evicted from the index cache (file deleted).", &m.index_cache_evictions),
            ("tidemark_store_index_fetched_bytes", "Bytes of index files downloaded from the bucket.", &m.index_fetched_bytes),
            ("tidemark_store_chunk_cache_hits", "Chunk ranges answered by the chunk cache.", &m.chunk_cache_hits),
            ("tidemark_store_chunk_cache_misses", "Chunk ranges read from the bucket.", &m.chunk_cache_misses),
            ("tidemark_store_chunk_cache_evictions", "Chunk ranges evicted from the chunk cache.", &m.chunk_cache_evictions),
            ("tidemark_store_chunk_fetch_ranges", "Ranged GETs of chunk segments (coalesced reads).", &m.chunk_fetch_ranges),
            ("tidemark_store_chunk_fetched_bytes", "Bytes of chunk segments read from the bucket (gaps read with them included).", &m.chunk_fetched_bytes),
            ("tidemark_store_bucket_read_failures", "Index or chunk reads from the bucket that failed (the query's answer says it is partial).", &m.bucket_read_failures),
        ];
        for (name, help, c) in counters {
            registry.register(name, help, c.clone());
        }
        let gauges: [(&str, &str, &Gauge); 4] = [
            ("tidemark_store_blocks_loaded", "Blocks from the bucket that this store serves.", &m.blocks_loaded),
            ("tidemark_store_blocks_ignored", "Complete blocks in the bucket that cannot be served (listed files wrong); see the log.", &m.blocks_ignored),
            ("tidemark_store_index_cache_bytes", "Bytes of index files in the index cache.", &m.index_cache_bytes),
            ("tidemark_store_chunk_cache_bytes", "Bytes of chunk ranges in the chunk cache.", &m.chunk_cache_bytes),
        ];
        for (name, help, g) in gauges {
            registry.register(name, help, g.clone());
        }
        registry.register(
            "tidemark_store_last_successful_sync_timestamp_seconds",
            "Unix time of the last bucket sync that succeeded.",
            m.last_success.clone(),
        );
        Arc::new(m)
    }

    /// Failed syncs so far.
    pub fn sync_failures(&self) -> u64 {
        self.sync_failures.get()
    }
}

/// The bucket, how to sync it and how much to cache.
#[derive(Clone)]
pub struct StoreOptions {
    /// The bucket client.
    pub store: Arc<dyn ObjectStore>,
    /// Key prefix (no leading or trailing `/`; empty for none).
    pub prefix: String,
    /// Time between syncs (and between tries of the first one).
    pub sync_interval: Duration,
    /// Bytes of index files kept on local disk (`--store.index-cache-size`).
    pub index_cache_bytes: u64,
    /// Bytes of chunk ranges kept in memory (`--store.chunk-cache-size`).
    pub chunk_cache_bytes: u64,
}

/// What one sync did.
#[derive(Debug, Default)]
pub struct SyncReport {
    /// Complete blocks in the bucket, superseded ones excluded.
    pub wanted: usize,
    /// Blocks newly served by this sync.
    pub added: usize,
    /// Blocks no longer served (gone from the bucket, or superseded).
    pub removed: usize,
    /// Prefixes without `meta.json` (ignored).
    pub incomplete: usize,
    /// Complete blocks that cannot be served (logged).
    pub ignored: usize,
}

/// The store's view of the bucket: its cache directory, caches and the
/// blocks it serves through a read-only [`Db`].
pub struct BucketStore {
    opts: StoreOptions,
    dir: PathBuf,
    reader: Arc<BucketReader>,
    metrics: Arc<StoreMetrics>,
    next_id: AtomicU64,
}

impl BucketStore {
    /// Prepares `cache_dir` (removes what a previous run cached, and the
    /// whole-block directories of phase 0) and makes empty caches. Bucket
    /// reads run on the current tokio runtime.
    ///
    /// # Errors
    /// When the cache directory cannot be prepared.
    ///
    /// # Panics
    /// Outside a tokio runtime.
    pub fn open(
        opts: StoreOptions,
        cache_dir: &Path,
        metrics: Arc<StoreMetrics>,
    ) -> Result<Self, SyncError> {
        prepare_cache_dir(cache_dir)?;
        let reader = Arc::new(BucketReader {
            store: opts.store.clone(),
            handle: tokio::runtime::Handle::current(),
            chunks: ChunkCache::new(opts.chunk_cache_bytes),
            indexes: IndexCache::new(cache_dir.join(INDEX_DIR), opts.index_cache_bytes),
            metrics: metrics.clone(),
        });
        Ok(Self {
            opts,
            dir: cache_dir.to_path_buf(),
            reader,
            metrics,
            next_id: AtomicU64::new(1),
        })
    }

    fn block_key(&self, ulid: &str) -> ObjectPath {
        bucket::block_prefix(&self.opts.prefix, ulid)
    }

    /// One bucket sync of the blocks `db` serves; see the module doc.
    ///
    /// # Errors
    /// On the first bucket or cache error; blocks added before it are
    /// served.
    pub async fn sync(&self, db: &Db) -> Result<SyncReport, SyncError> {
        let opts = &self.opts;
        let mut report = SyncReport::default();
        let (complete, incomplete) = list_complete(opts).await?;
        report.incomplete = incomplete;
        let superseded = superseded(
            &complete
                .iter()
                .map(|(k, v)| (k.clone(), v.0.clone()))
                .collect(),
        );
        let wanted: BTreeSet<&String> = complete
            .keys()
            .filter(|u| !superseded.contains(*u))
            .collect();
        report.wanted = wanted.len();
        let served: BTreeSet<String> = db.blocks().into_iter().map(|m| m.ulid).collect();
        let mut added = Vec::new();
        let mut failure = None;
        for ulid in wanted.iter().filter(|u| !served.contains(**u)) {
            let (meta, body) = &complete[*ulid];
            match self.open_block(ulid, &meta.labels, body).await {
                Ok(b) => added.push(Arc::new(b)),
                Err(SyncError::BadBlock { ulid, reason }) => {
                    tracing::warn!(block = %ulid, %reason, "block in the bucket cannot be served; ignored");
                    report.ignored += 1;
                }
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        let removed: Vec<String> = served
            .iter()
            .filter(|u| !wanted.contains(u))
            .cloned()
            .collect();
        report.added = added.len();
        report.removed = removed.len();
        db.update_blocks(added, &removed);
        for ulid in &removed {
            tracing::info!(block = %ulid, "block no longer in the bucket (or superseded); no longer served");
            self.reader.indexes.forget(ulid);
            delete_dir(&self.dir.join(BLOCKS_DIR), ulid)?;
        }
        self.metrics.blocks_loaded.set(db.blocks().len() as i64);
        self.metrics.blocks_ignored.set(report.ignored as i64);
        match failure {
            Some(e) => Err(e),
            None => Ok(report),
        }
    }

    /// Lists block `ulid`'s files, writes its `meta.json` and `tombstones`
    /// into the cache and opens it with its `thanos.labels` as stream
    /// labels (every series it yields carries them).
    async fn open_block(
        &self,
        ulid: &str,
        stream: &BTreeMap<String, String>,
        meta: &Bytes,
    ) -> Result<Block, SyncError> {
        let key = self.block_key(ulid);
        let bad = |reason: String| SyncError::BadBlock {
            ulid: ulid.to_string(),
            reason,
        };
        let mut stream_labels = crate::model::LabelsBuilder::new();
        for (name, value) in stream {
            stream_labels.push(name, value);
        }
        let stream_labels = stream_labels
            .build()
            .map_err(|e| bad(format!("thanos.labels: {e}")))?;
        let top = list_files(self.opts.store.as_ref(), &key).await?;
        let chunks = list_files(self.opts.store.as_ref(), &key.child(CHUNKS_DIR)).await?;
        let index_bytes = *top
            .get(INDEX_FILE)
            .ok_or_else(|| bad("no index object".to_string()))?;
        let mut segment_sizes = Vec::with_capacity(chunks.len());
        for (i, (name, size)) in chunks.iter().enumerate() {
            let want = crate::storage::block::segment_name(i as u32 + 1);
            if *name != want {
                return Err(bad(format!(
                    "chunk segments are not numbered 1..{} (found {name})",
                    chunks.len()
                )));
            }
            segment_sizes.push(*size);
        }
        let tombstones = match top.get(TOMBSTONES_FILE) {
            None => None,
            Some(&size) if size > MAX_TOMBSTONES_BYTES => {
                return Err(bad(format!(
                    "tombstones of {size} bytes, more than the {MAX_TOMBSTONES_BYTES} read"
                )))
            }
            Some(_) => Some(get_all(self.opts.store.as_ref(), &key.child(TOMBSTONES_FILE)).await?),
        };
        let blocks = self.dir.join(BLOCKS_DIR);
        let tmp = blocks.join(format!("{ulid}{DOWNLOAD_SUFFIX}"));
        let dst = blocks.join(ulid);
        let io = |op, path: &Path| {
            let path = path.to_path_buf();
            move |source| SyncError::Io { op, path, source }
        };
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp).map_err(io("create block directory", &tmp))?;
        let mut downloaded = meta.len() as u64;
        write_file(&tmp.join(META_FILE), meta)?;
        match &tombstones {
            Some(b) => {
                downloaded += b.len() as u64;
                write_file(&tmp.join(TOMBSTONES_FILE), b)?;
            }
            None => crate::storage::tombstones::write_tombstones(
                &tmp.join(TOMBSTONES_FILE),
                &Default::default(),
            )
            .map_err(|e| bad(format!("writing empty tombstones: {e}")))?,
        }
        self.metrics.downloaded_bytes.inc_by(downloaded);
        if dst.exists() {
            delete_dir(&blocks, ulid)?;
        }
        std::fs::rename(&tmp, &dst).map_err(io("rename block directory", &tmp))?;
        let files = Arc::new(BucketBlockFiles {
            reader: self.reader.clone(),
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            ulid: ulid.to_string(),
            key: key.clone(),
            index_bytes,
            segment_sizes: segment_sizes.clone(),
            loading: parking_lot::Mutex::new(()),
        });
        Block::open_remote(
            &dst,
            files,
            index_bytes,
            segment_sizes,
            PathBuf::from(key.as_ref()),
        )
        .map(|b| b.with_stream_labels(stream_labels))
        .map_err(|e| {
            let _ = delete_dir(&blocks, ulid);
            bad(e.to_string())
        })
    }
}

/// Complete blocks of the bucket (ulid -> checked meta and its bytes), and
/// the number of block prefixes without `meta.json`. A `meta.json` that
/// cannot be trusted ([`bucket::parse_meta`]) is logged and its block
/// ignored.
async fn list_complete(
    opts: &StoreOptions,
) -> Result<(BTreeMap<String, (BucketMeta, Bytes)>, usize), SyncError> {
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
    let mut complete = BTreeMap::new();
    let mut incomplete = 0;
    for p in listing.common_prefixes {
        let Some(ulid) = p.filename().map(str::to_string) else {
            continue;
        };
        if !is_block_name(&ulid) {
            continue;
        }
        let key = p.child(META_FILE);
        let why = match bucket::read_small(opts.store.as_ref(), &key).await? {
            Small::Missing => {
                incomplete += 1;
                continue;
            }
            Small::TooLarge(size) => format!(
                "{size} bytes, over the {}-byte limit",
                bucket::MAX_META_BYTES
            ),
            Small::Body(body) => match bucket::parse_meta(&ulid, &body) {
                MetaRead::Complete(m) => {
                    complete.insert(ulid, (*m, body));
                    continue;
                }
                MetaRead::Missing => {
                    incomplete += 1;
                    continue;
                }
                MetaRead::Hostile(why) => why,
            },
        };
        tracing::warn!(key = %key, problem = %why, "meta.json cannot be trusted; block ignored");
    }
    Ok((complete, incomplete))
}

/// Plain file names and sizes of the objects directly under `prefix`,
/// sorted by name.
async fn list_files(
    store: &dyn ObjectStore,
    prefix: &ObjectPath,
) -> Result<BTreeMap<String, u64>, SyncError> {
    let l = store
        .list_with_delimiter(Some(prefix))
        .await
        .map_err(|source| SyncError::Bucket {
            op: "LIST",
            key: prefix.to_string(),
            source,
        })?;
    Ok(l.objects
        .into_iter()
        .filter_map(|o| Some((o.location.filename()?.to_string(), o.size)))
        .filter(|(n, _)| !n.contains(['/', '\\']) && !n.starts_with('.'))
        .collect())
}

/// The whole (small) object at `key`.
async fn get_all(store: &dyn ObjectStore, key: &ObjectPath) -> Result<Bytes, SyncError> {
    let bucket = |source| SyncError::Bucket {
        op: "GET",
        key: key.to_string(),
        source,
    };
    store
        .get(key)
        .await
        .map_err(bucket)?
        .bytes()
        .await
        .map_err(bucket)
}

/// Downloads `size` bytes of `key` into the new file `path` a piece
/// ([`bucket::PIECE_BYTES`]) at a time, fsynced. Returns the bytes written.
pub(crate) async fn download_file(
    store: &dyn ObjectStore,
    key: &ObjectPath,
    size: u64,
    path: &Path,
) -> Result<u64, SyncError> {
    let io = |op| {
        let path = path.to_path_buf();
        move |source| SyncError::Io { op, path, source }
    };
    let mut f = std::fs::File::create(path).map_err(io("create"))?;
    let mut at = 0u64;
    while at < size {
        let end = at.saturating_add(bucket::PIECE_BYTES).min(size);
        let piece = store
            .get_range(key, at..end)
            .await
            .map_err(|source| SyncError::Bucket {
                op: "GET",
                key: key.to_string(),
                source,
            })?;
        if piece.len() as u64 != end - at {
            return Err(SyncError::Io {
                op: "download (the object is shorter than listed)",
                path: path.to_path_buf(),
                source: std::io::Error::from(std::io::ErrorKind::UnexpectedEof),
            });
        }
        f.write_all(&piece).map_err(io("write"))?;
        at = end;
    }
    Ok(size)
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), SyncError> {
    std::fs::write(path, bytes).map_err(|source| SyncError::Io {
        op: "write",
        path: path.to_path_buf(),
        source,
    })
}

/// Empties the cache's `blocks/` and `index/` and removes phase 0's
/// whole-block directories (and their `*.download`, `*.delete`).
fn prepare_cache_dir(dir: &Path) -> Result<(), SyncError> {
    let io = |op, path: &Path| {
        let path = path.to_path_buf();
        move |source| SyncError::Io { op, path, source }
    };
    std::fs::create_dir_all(dir).map_err(io("create cache directory", dir))?;
    for sub in [BLOCKS_DIR, INDEX_DIR] {
        let p = dir.join(sub);
        if p.exists() {
            std::fs::remove_dir_all(&p).map_err(io("empty cache directory", &p))?;
        }
        std::fs::create_dir_all(&p).map_err(io("create cache directory", &p))?;
    }
    let rd = std::fs::read_dir(dir).map_err(io("read cache directory", dir))?;
    for e in rd.filter_map(|e| e.ok()) {
        let name = e.file_name().to_string_lossy().into_owned();
        let stem = name
            .strip_suffix(DOWNLOAD_SUFFIX)
            .or_else(|| name.strip_suffix(DELETE_SUFFIX))
            .unwrap_or(&name);
        if is_block_name(stem) && e.path().is_dir() {
            let p = e.path();
            std::fs::remove_dir_all(&p).map_err(io("remove phase 0 cached block", &p))?;
        }
    }
    Ok(())
}

/// Removes `<dir>/<name>`: renamed first, so a crash midway leaves a
/// `*.delete` directory (removed at the next start), never half a block.
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

/// Syncs at start and every `sync_interval` until `stop`; calls
/// `on_first_sync` once, after the first sync that succeeds (readiness).
/// A failed sync is logged and counted; the store keeps serving.
pub async fn sync_loop(
    store: Arc<BucketStore>,
    db: Arc<Db>,
    on_first_sync: Box<dyn FnOnce() + Send>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut on_first_sync = Some(on_first_sync);
    loop {
        match store.sync(&db).await {
            Ok(r) => {
                store.metrics.last_success.set(unix_now());
                if r.added > 0 || r.removed > 0 || on_first_sync.is_some() {
                    tracing::info!(
                        wanted = r.wanted,
                        added = r.added,
                        removed = r.removed,
                        incomplete = r.incomplete,
                        ignored = r.ignored,
                        "bucket sync finished"
                    );
                }
                if let Some(f) = on_first_sync.take() {
                    f();
                }
            }
            Err(e) => {
                store.metrics.sync_failures.inc();
                tracing::error!(error = %e, "bucket sync failed; serving the blocks already known, retrying next interval");
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(store.opts.sync_interval) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}
