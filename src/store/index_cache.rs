//! The store's index cache: block index files downloaded into
//! `<cache-dir>/index/<ulid>`, memory-mapped and checked
//! ([`BlockIndex`]), kept up to `--store.index-cache-size` bytes of files.
//! The least recently used index that no read holds is evicted (its file
//! deleted) when another is added; an index that reads hold at once may
//! take the cache past its bound until they let it go.
//!
//! Owns the `index/` directory's files and which are kept; never reads
//! the bucket (the block's reader downloads into [`IndexCache::path`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::lru::ByteLru;
use crate::storage::block::BlockIndex;

/// Indexes on disk, bounded by their files' bytes.
#[derive(Debug)]
pub(crate) struct IndexCache {
    dir: PathBuf,
    lru: Mutex<ByteLru<String, Arc<BlockIndex>>>,
}

/// What one insert or shrink did.
#[derive(Debug, Default)]
pub(crate) struct Evicted {
    pub(crate) count: u64,
}

fn in_use(ix: &Arc<BlockIndex>) -> bool {
    Arc::strong_count(ix) > 1
}

impl IndexCache {
    /// A cache over the (empty) directory `dir`.
    pub(crate) fn new(dir: PathBuf, capacity: u64) -> Self {
        Self {
            dir,
            lru: Mutex::new(ByteLru::new(capacity)),
        }
    }

    /// Where the index of block `ulid` is kept.
    pub(crate) fn path(&self, ulid: &str) -> PathBuf {
        self.dir.join(ulid)
    }

    /// The held index of block `ulid`.
    pub(crate) fn get(&self, ulid: &str) -> Option<Arc<BlockIndex>> {
        self.lru.lock().get(&ulid.to_string()).cloned()
    }

    /// Keeps `ix` (its file at [`Self::path`]) and evicts what no longer
    /// fits.
    pub(crate) fn insert(&self, ulid: &str, ix: Arc<BlockIndex>) -> Evicted {
        let bytes = ix.len();
        let evicted = {
            let mut lru = self.lru.lock();
            // A replaced entry's file is the new one's: not deleted.
            lru.remove(&ulid.to_string());
            lru.insert(ulid.to_string(), ix, bytes, in_use)
        };
        self.delete(evicted)
    }

    /// Evicts indexes released since they took the cache past its bound.
    pub(crate) fn shrink(&self) -> Evicted {
        let evicted = self.lru.lock().shrink(in_use);
        self.delete(evicted)
    }

    /// Drops block `ulid`'s index (the block left the bucket); a read
    /// still holding it keeps its mapping.
    pub(crate) fn forget(&self, ulid: &str) {
        let removed = self.lru.lock().remove(&ulid.to_string());
        if let Some(ix) = removed {
            self.delete(vec![ix]);
        }
    }

    fn delete(&self, evicted: Vec<Arc<BlockIndex>>) -> Evicted {
        let count = evicted.len() as u64;
        for ix in evicted {
            let path = ix.path().to_path_buf();
            drop(ix);
            remove_file_logged(&path);
        }
        Evicted { count }
    }

    /// Bytes of the index files kept.
    pub(crate) fn bytes(&self) -> u64 {
        self.lru.lock().bytes()
    }
}

/// Removes a cache file; a failure is logged (the file is garbage the next
/// start removes).
pub(crate) fn remove_file_logged(path: &Path) {
    if let Err(e) = std::fs::remove_file(path) {
        if e.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!(path = %path.display(), error = %e, "removing a cached index failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The packed fixture's index, copied to `<dir>/<ulid>` and opened.
    fn index(dir: &Path, ulid: &str) -> Arc<BlockIndex> {
        let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/testdata/block-packed-v1");
        std::fs::copy(fixture.join("index"), dir.join(ulid)).unwrap();
        let sizes = [std::fs::metadata(fixture.join("chunks/000001"))
            .unwrap()
            .len()];
        Arc::new(BlockIndex::open(&dir.join(ulid), &sizes).unwrap())
    }

    #[test]
    fn index_cache_evicts_released_indexes_and_deletes_their_files() {
        let tmp = tempfile::tempdir().unwrap();
        let one = index(tmp.path(), "a").len();
        // Room for two indexes.
        let c = IndexCache::new(tmp.path().to_path_buf(), one * 2 + one / 2);
        let a = index(tmp.path(), "a");
        assert_eq!(c.insert("a", a.clone()).count, 0);
        assert_eq!(c.insert("b", index(tmp.path(), "b")).count, 0);
        // `a` is held by a read: `b`, released, goes instead.
        assert_eq!(c.insert("c", index(tmp.path(), "c")).count, 1);
        assert!(!tmp.path().join("b").exists());
        assert!(tmp.path().join("a").exists());
        assert!(c.get("b").is_none());
        assert_eq!(c.bytes(), one * 2);
        // Released, `a` is the least recently used one.
        drop(a);
        assert_eq!(c.insert("d", index(tmp.path(), "d")).count, 1);
        assert!(!tmp.path().join("a").exists());
        // A block gone from the bucket: its index goes with it.
        c.forget("c");
        assert!(!tmp.path().join("c").exists());
        assert_eq!(c.bytes(), one);
    }
}
