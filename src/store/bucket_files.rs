//! [`BucketBlockFiles`]: how a block served by the store reads its index
//! and chunks from the bucket ([`RemoteBlockFiles`]), through the shared
//! [`BucketReader`] (the client, the runtime the requests run on, both
//! caches and the metrics).
//!
//! Reads are called from query threads: each bucket request runs on the
//! server's runtime and the thread waits for it ([`READ_TIMEOUT`] at
//! most), so an API handler never blocks the runtime itself. A failed read
//! is a [`BlockError::Fetch`] for that block (the answer says it is
//! partial), counted in `tidemark_store_bucket_read_failures_total`.
//! Owns the bucket keys of a block's files; never lists the bucket (the
//! sync does).

use std::future::Future;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use object_store::path::Path as ObjectPath;
use object_store::ObjectStore;
use parking_lot::Mutex;

use super::chunk_cache::{coalesce, ChunkCache, ChunkKey, MAX_GAP_BYTES, MAX_READ_BYTES};
use super::index_cache::{remove_file_logged, IndexCache};
use super::{download_file, StoreMetrics, SyncError};
use crate::storage::block::{BlockError, BlockIndex, RemoteBlockFiles, CHUNKS_DIR};

/// Longest a query thread waits for one bucket read (an index download or
/// the chunk reads of one batch); the client's own retries come first.
pub(crate) const READ_TIMEOUT: Duration = Duration::from_secs(60);
/// Chunk reads of one batch in flight at once.
const READS_IN_FLIGHT: usize = 8;

/// What every block served by the store shares.
pub(crate) struct BucketReader {
    pub(crate) store: Arc<dyn ObjectStore>,
    pub(crate) handle: tokio::runtime::Handle,
    pub(crate) chunks: ChunkCache,
    pub(crate) indexes: IndexCache,
    pub(crate) metrics: Arc<StoreMetrics>,
}

impl BucketReader {
    /// Runs `fut` on the runtime and waits for it on this (non-runtime)
    /// thread.
    fn wait<T: Send + 'static>(
        &self,
        fut: impl Future<Output = Result<T, SyncError>> + Send + 'static,
    ) -> Result<T, String> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.handle.spawn(async move {
            let _ = tx.send(fut.await);
        });
        let got = match rx.recv_timeout(READ_TIMEOUT) {
            Ok(r) => r.map_err(|e| e.to_string()),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                Err(format!("no answer from the bucket within {READ_TIMEOUT:?}"))
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                Err("the read task ended without an answer (shutting down)".to_string())
            }
        };
        if got.is_err() {
            self.metrics.bucket_read_failures.inc();
        }
        got
    }

    fn update_gauges(&self) {
        self.metrics
            .index_cache_bytes
            .set(i64::try_from(self.indexes.bytes()).unwrap_or(i64::MAX));
        self.metrics
            .chunk_cache_bytes
            .set(i64::try_from(self.chunks.bytes()).unwrap_or(i64::MAX));
    }
}

/// One block's files in the bucket.
pub(crate) struct BucketBlockFiles {
    pub(crate) reader: Arc<BucketReader>,
    /// The store's number for the block (chunk cache keys).
    pub(crate) id: u64,
    pub(crate) ulid: String,
    /// `<prefix>/<ulid>`.
    pub(crate) key: ObjectPath,
    pub(crate) index_bytes: u64,
    /// Size of segment `n` at `[n - 1]`.
    pub(crate) segment_sizes: Vec<u64>,
    /// Held while the index is downloaded, so concurrent queries download
    /// it once.
    pub(crate) loading: Mutex<()>,
}

impl BucketBlockFiles {
    fn fetch_error(&self, file: &str, message: String) -> BlockError {
        BlockError::Fetch {
            path: PathBuf::from(self.key.as_ref()).join(file),
            message,
        }
    }

    fn cached_index(&self) -> Option<Arc<BlockIndex>> {
        let got = self.reader.indexes.get(&self.ulid);
        if got.is_some() {
            self.reader.metrics.index_cache_hits.inc();
        }
        got
    }
}

impl RemoteBlockFiles for BucketBlockFiles {
    fn index(&self) -> Result<Arc<BlockIndex>, BlockError> {
        if let Some(ix) = self.cached_index() {
            return Ok(ix);
        }
        let _loading = self.loading.lock();
        if let Some(ix) = self.cached_index() {
            return Ok(ix);
        }
        let r = &self.reader;
        r.metrics.index_cache_misses.inc();
        // Indexes released since the last load make room first.
        let evicted = r.indexes.shrink();
        r.metrics.index_cache_evictions.inc_by(evicted.count);
        let path = r.indexes.path(&self.ulid);
        let tmp = path.with_extension("download");
        let (store, key, size) = (
            r.store.clone(),
            self.key.child(crate::storage::block::INDEX_FILE),
            self.index_bytes,
        );
        let tmp2 = tmp.clone();
        let got = r.wait(async move { download_file(store.as_ref(), &key, size, &tmp2).await });
        let bytes = got.map_err(|m| {
            remove_file_logged(&tmp);
            self.fetch_error(crate::storage::block::INDEX_FILE, m)
        })?;
        r.metrics.index_fetched_bytes.inc_by(bytes);
        std::fs::rename(&tmp, &path).map_err(|source| BlockError::Io {
            op: "rename downloaded index",
            path: tmp.clone(),
            source,
        })?;
        let ix = match BlockIndex::open(&path, &self.segment_sizes) {
            Ok(ix) => Arc::new(ix),
            Err(e) => {
                remove_file_logged(&path);
                return Err(e);
            }
        };
        let evicted = r.indexes.insert(&self.ulid, ix.clone());
        r.metrics.index_cache_evictions.inc_by(evicted.count);
        r.update_gauges();
        Ok(ix)
    }

    fn read_chunk_ranges(
        &self,
        segment: u32,
        ranges: &[Range<u64>],
    ) -> Result<Vec<Bytes>, BlockError> {
        let r = &self.reader;
        let key = |range: &Range<u64>| ChunkKey {
            block: self.id,
            segment,
            start: range.start,
            end: range.end,
        };
        let mut out: Vec<Option<Bytes>> = ranges.iter().map(|g| r.chunks.get(&key(g))).collect();
        let missing: Vec<usize> = (0..out.len()).filter(|&i| out[i].is_none()).collect();
        r.metrics
            .chunk_cache_hits
            .inc_by((ranges.len() - missing.len()) as u64);
        r.metrics.chunk_cache_misses.inc_by(missing.len() as u64);
        if !missing.is_empty() {
            let miss_ranges: Vec<Range<u64>> = missing.iter().map(|&i| ranges[i].clone()).collect();
            let groups = coalesce(&miss_ranges, MAX_GAP_BYTES, MAX_READ_BYTES);
            let reads: Vec<Range<u64>> = groups.iter().map(|(g, _)| g.clone()).collect();
            let file = Path::new(CHUNKS_DIR).join(crate::storage::block::segment_name(segment));
            let object = self
                .key
                .child(CHUNKS_DIR)
                .child(crate::storage::block::segment_name(segment).as_str());
            let store = r.store.clone();
            let reads2 = reads.clone();
            let got = r
                .wait(async move { get_ranges(store, object, reads2).await })
                .map_err(|m| self.fetch_error(&file.to_string_lossy(), m))?;
            r.metrics.chunk_fetch_ranges.inc_by(reads.len() as u64);
            for ((read, members), buf) in groups.iter().zip(got) {
                r.metrics.chunk_fetched_bytes.inc_by(buf.len() as u64);
                if buf.len() as u64 != read.end - read.start {
                    r.metrics.bucket_read_failures.inc();
                    return Err(self.fetch_error(
                        &file.to_string_lossy(),
                        format!(
                            "asked bytes {}..{}, got {} bytes (the object is shorter than listed?)",
                            read.start,
                            read.end,
                            buf.len()
                        ),
                    ));
                }
                for m in members.clone() {
                    let g = &miss_ranges[m];
                    let b =
                        buf.slice((g.start - read.start) as usize..(g.end - read.start) as usize);
                    let evicted = r.chunks.insert(key(g), &b);
                    r.metrics.chunk_cache_evictions.inc_by(evicted as u64);
                    out[missing[m]] = Some(b);
                }
            }
            r.update_gauges();
        }
        Ok(out.into_iter().flatten().collect())
    }
}

/// Reads `reads` of `object`, [`READS_IN_FLIGHT`] at a time, in order.
async fn get_ranges(
    store: Arc<dyn ObjectStore>,
    object: ObjectPath,
    reads: Vec<Range<u64>>,
) -> Result<Vec<Bytes>, SyncError> {
    let mut out = Vec::with_capacity(reads.len());
    for wave in reads.chunks(READS_IN_FLIGHT) {
        let mut set = tokio::task::JoinSet::new();
        for (i, r) in wave.iter().enumerate() {
            let (store, object, r) = (store.clone(), object.clone(), r.clone());
            set.spawn(async move { (i, store.get_range(&object, r).await) });
        }
        let mut got: Vec<Option<Bytes>> = vec![None; wave.len()];
        while let Some(joined) = set.join_next().await {
            let (i, res) = joined.map_err(|e| SyncError::Task(e.to_string()))?;
            let b = res.map_err(|source| SyncError::Bucket {
                op: "GET",
                key: object.to_string(),
                source,
            })?;
            got[i] = Some(b);
        }
        out.extend(got.into_iter().flatten());
    }
    Ok(out)
}
