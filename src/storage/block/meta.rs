//! `meta.json`: a block's identity, time range, statistics and compaction
//! lineage, with Prometheus's field names so its tools can read it.
//!
//! Owns the JSON shape and its atomic write; never looks at index or chunks.
//! Format: `docs/format/meta.md`.

use std::fs::{self, File};
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use super::corruption::Corruption;
use super::BlockError;
use crate::storage::tombstones::sync_dir;

/// The `version` field this code writes and the only one it reads.
pub const META_VERSION: u32 = 1;

/// The contents of `meta.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BlockMeta {
    /// The block's ULID (26 characters, Crockford base32); also its
    /// directory name.
    pub ulid: String,
    /// First timestamp the block may hold (inclusive, ms).
    pub min_time: i64,
    /// End of the block's range (EXCLUSIVE, ms), as in Prometheus.
    pub max_time: i64,
    /// Counts filled in by the writer.
    #[serde(default)]
    pub stats: BlockStats,
    /// How the block came to be.
    #[serde(default)]
    pub compaction: BlockCompaction,
    /// Tidemark's own section (absent in Prometheus's and Thanos's blocks;
    /// their readers ignore it).
    #[serde(default, skip_serializing_if = "TidemarkMeta::is_empty")]
    pub tidemark: TidemarkMeta,
    /// Format version of the block ([`META_VERSION`]).
    pub version: u32,
}

/// `meta.json`'s `tidemark` section.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TidemarkMeta {
    /// Set on blocks written when the head was persisted at shutdown: the
    /// head's floor (oldest timestamp it accepted) before that, which the
    /// next open restores instead of this block's `maxTime`, so samples of
    /// series that lagged behind the newest are still taken after the
    /// restart. Merges keep the highest floor their parents imply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head_floor: Option<i64>,
}

impl TidemarkMeta {
    fn is_empty(&self) -> bool {
        self.head_floor.is_none()
    }
}

impl BlockMeta {
    /// The head floor this block implies when the database opens: its
    /// `tidemark.headFloor` when it was written at shutdown, else its
    /// `maxTime` (everything before it is persisted).
    pub fn implied_head_floor(&self) -> i64 {
        self.tidemark
            .head_floor
            .map_or(self.max_time, |f| f.min(self.max_time))
    }

    /// A level-1 block (written from the head) with a fresh ULID covering
    /// `[min_time, max_time)`; it is its own only source.
    pub fn new(min_time: i64, max_time: i64) -> Self {
        let ulid = new_ulid();
        Self {
            compaction: BlockCompaction {
                level: 1,
                sources: vec![ulid.clone()],
                parents: Vec::new(),
            },
            ulid,
            min_time,
            max_time,
            stats: BlockStats::default(),
            tidemark: TidemarkMeta::default(),
            version: META_VERSION,
        }
    }

    /// Reports whether `[mint, maxt]` (inclusive) overlaps the block's
    /// `[min_time, max_time)`.
    pub fn overlaps(&self, mint: i64, maxt: i64) -> bool {
        mint < self.max_time && self.min_time <= maxt
    }
}

/// Counts of what a block holds.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BlockStats {
    /// Samples over all chunks.
    #[serde(default)]
    pub num_samples: u64,
    /// Series (each with at least one chunk).
    #[serde(default)]
    pub num_series: u64,
    /// Chunks.
    #[serde(default)]
    pub num_chunks: u64,
    /// Tombstone intervals when the block was written (0 for a new block;
    /// later deletions live in the `tombstones` file only).
    #[serde(default)]
    pub num_tombstones: u64,
}

/// Compaction lineage.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockCompaction {
    /// 1 for a block cut from the head, parents' maximum + 1 after a merge.
    pub level: u32,
    /// ULIDs of the level-1 blocks whose data this block holds.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<String>,
    /// The blocks merged into this one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parents: Vec<BlockDesc>,
}

/// A parent block in [`BlockCompaction::parents`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BlockDesc {
    /// The parent's ULID.
    pub ulid: String,
    /// The parent's `minTime`.
    pub min_time: i64,
    /// The parent's `maxTime` (exclusive).
    pub max_time: i64,
}

/// A new ULID: 48 bits of milliseconds since the epoch then 80 random bits,
/// strictly increasing within this process (a monotonic generator), so
/// block directories sort by creation time.
pub fn new_ulid() -> String {
    static GENERATOR: Mutex<ulid::Generator> = Mutex::new(ulid::Generator::new());
    let mut g = GENERATOR
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let id = match g.generate() {
        Ok(id) => id,
        Err(overflow) => overflow.commit_overflow_increment(),
    };
    id.to_string()
}

/// Reads and checks `meta.json`.
pub(crate) fn read_meta(path: &Path) -> Result<BlockMeta, BlockError> {
    let bytes = fs::read(path).map_err(|source| BlockError::Io {
        op: "read meta.json",
        path: path.to_path_buf(),
        source,
    })?;
    let meta: BlockMeta = serde_json::from_slice(&bytes).map_err(|e| BlockError::Corrupt {
        path: path.to_path_buf(),
        offset: 0,
        reason: Corruption::InvalidMeta(e),
    })?;
    if meta.version != META_VERSION {
        return Err(BlockError::UnsupportedVersion {
            path: path.to_path_buf(),
            version: u64::from(meta.version),
        });
    }
    Ok(meta)
}

/// Writes `meta.json` atomically (tmp, fsync, rename, fsync dir).
pub(crate) fn write_meta(dir: &Path, meta: &BlockMeta) -> Result<(), BlockError> {
    let path = dir.join(super::META_FILE);
    let tmp = dir.join(format!("{}.tmp", super::META_FILE));
    let io = |op: &'static str, p: &Path| {
        let p = p.to_path_buf();
        move |source| BlockError::Io {
            op,
            path: p,
            source,
        }
    };
    let mut json = serde_json::to_vec_pretty(meta).map_err(|e| BlockError::Io {
        op: "encode meta.json",
        path: path.clone(),
        source: std::io::Error::other(e),
    })?;
    json.push(b'\n');
    let mut f = File::create(&tmp).map_err(io("create meta.json", &tmp))?;
    f.write_all(&json).map_err(io("write meta.json", &tmp))?;
    f.sync_all().map_err(io("fsync meta.json", &tmp))?;
    drop(f);
    fs::rename(&tmp, &path).map_err(io("rename meta.json", &path))?;
    sync_dir(dir).map_err(io("fsync block directory", dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_json_uses_prometheus_field_names() {
        let meta = BlockMeta {
            ulid: "01HZZZZZZZZZZZZZZZZZZZZZZZ".into(),
            min_time: 0,
            max_time: 7_200_000,
            stats: BlockStats {
                num_samples: 10,
                num_series: 2,
                num_chunks: 3,
                num_tombstones: 0,
            },
            compaction: BlockCompaction {
                level: 2,
                sources: vec!["A".into(), "B".into()],
                parents: vec![BlockDesc {
                    ulid: "A".into(),
                    min_time: 0,
                    max_time: 3_600_000,
                }],
            },
            tidemark: TidemarkMeta::default(),
            version: 1,
        };
        let json = serde_json::to_value(&meta).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "ulid": "01HZZZZZZZZZZZZZZZZZZZZZZZ",
                "minTime": 0, "maxTime": 7_200_000,
                "stats": {"numSamples": 10, "numSeries": 2, "numChunks": 3, "numTombstones": 0},
                "compaction": {"level": 2, "sources": ["A", "B"],
                               "parents": [{"ulid": "A", "minTime": 0, "maxTime": 3_600_000}]},
                "version": 1
            })
        );
        let back: BlockMeta = serde_json::from_value(json).unwrap();
        assert_eq!(back, meta);
    }

    #[test]
    fn new_ulid_is_time_ordered_and_unique() {
        let ids: Vec<String> = (0..1000).map(|_| new_ulid()).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]));
        assert!(ids.iter().all(|id| id.len() == 26));
    }
}
