//! `shipper.json` in the data directory: which blocks are in object
//! storage (docs/format/shipper.md). Like Thanos's `thanos.shipper.json`
//! (`{"version": 1, "uploaded": [...]}`), and for a level-1 block the
//! same list; an entry also covers what an uploaded block was merged from,
//! so a local merge of shipped blocks is known to be shipped after its
//! sources are gone. Written atomically (temporary file, fsync, rename,
//! fsync of the directory). Owns this one file only.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::storage::block::BlockMeta;

/// Name of the file in the data directory.
pub const SHIPPER_FILE: &str = "shipper.json";
/// The one format version written and read ([`SHIPPER_FILE`]).
pub const SHIPPER_FORMAT_VERSION: u32 = 1;

/// Why the file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// I/O on the file.
    #[error("{op} {path}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Not the JSON this module writes.
    #[error("{path}: not a shipper state file: {reason}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What the JSON reader said.
        reason: String,
    },
    /// A version this build does not read.
    #[error("{path}: shipper state version {got}, this build reads {SHIPPER_FORMAT_VERSION}")]
    Version {
        /// The file.
        path: PathBuf,
        /// The version found.
        got: u32,
    },
}

#[derive(Serialize, Deserialize)]
struct File1 {
    version: u32,
    uploaded: Vec<String>,
}

/// ULIDs of uploaded blocks and of the blocks they were merged from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShippedSet {
    uploaded: BTreeSet<String>,
}

impl ShippedSet {
    /// Reads `path`; a missing file is an empty set.
    ///
    /// # Errors
    /// When the file exists but cannot be read or parsed, or has another
    /// version.
    pub fn load(path: &Path) -> Result<Self, StateError> {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(source) => {
                return Err(StateError::Io {
                    op: "read",
                    path: path.to_path_buf(),
                    source,
                })
            }
        };
        Self::decode(&bytes, path)
    }

    fn decode(bytes: &[u8], path: &Path) -> Result<Self, StateError> {
        #[derive(Deserialize)]
        struct Version {
            version: u32,
        }
        let malformed = |e: serde_json::Error| StateError::Malformed {
            path: path.to_path_buf(),
            reason: e.to_string(),
        };
        let v: Version = serde_json::from_slice(bytes).map_err(malformed)?;
        if v.version != SHIPPER_FORMAT_VERSION {
            return Err(StateError::Version {
                path: path.to_path_buf(),
                got: v.version,
            });
        }
        let f: File1 = serde_json::from_slice(bytes).map_err(malformed)?;
        Ok(Self {
            uploaded: f.uploaded.into_iter().collect(),
        })
    }

    /// The file's bytes (sorted ULIDs, so equal sets give equal files).
    pub fn encode(&self) -> Vec<u8> {
        let f = File1 {
            version: SHIPPER_FORMAT_VERSION,
            uploaded: self.uploaded.iter().cloned().collect(),
        };
        let mut out = serde_json::to_vec_pretty(&f).expect("strings always serialize");
        out.push(b'\n');
        out
    }

    /// Writes the set to `path` atomically and durably.
    ///
    /// # Errors
    /// On I/O failure (the previous file stays).
    pub fn save(&self, path: &Path) -> Result<(), StateError> {
        let tmp = path.with_extension("json.tmp");
        let io = |op, p: &Path| {
            let p = p.to_path_buf();
            move |source| StateError::Io {
                op,
                path: p,
                source,
            }
        };
        let mut f = File::create(&tmp).map_err(io("create", &tmp))?;
        f.write_all(&self.encode()).map_err(io("write", &tmp))?;
        f.sync_all().map_err(io("fsync", &tmp))?;
        drop(f);
        std::fs::rename(&tmp, path).map_err(io("rename", path))?;
        if let Some(dir) = path.parent() {
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(io("fsync directory of", path))?;
        }
        Ok(())
    }

    /// Whether `meta`'s data is in the bucket: the block was uploaded, or
    /// every block it was merged from was.
    pub fn covers(&self, meta: &BlockMeta) -> bool {
        self.uploaded.contains(&meta.ulid)
            || (!meta.compaction.sources.is_empty()
                && meta
                    .compaction
                    .sources
                    .iter()
                    .all(|s| self.uploaded.contains(s)))
    }

    /// Records an uploaded block (and its sources).
    pub fn add(&mut self, meta: &BlockMeta) {
        self.uploaded.insert(meta.ulid.clone());
        self.uploaded
            .extend(meta.compaction.sources.iter().cloned());
    }

    /// Forgets entries no local block is, or was merged from. Returns
    /// whether anything was dropped.
    pub fn retain_local(&mut self, local: &[BlockMeta]) -> bool {
        let keep: BTreeSet<&str> = local
            .iter()
            .flat_map(|m| {
                std::iter::once(m.ulid.as_str())
                    .chain(m.compaction.sources.iter().map(String::as_str))
            })
            .collect();
        let before = self.uploaded.len();
        self.uploaded.retain(|u| keep.contains(u.as_str()));
        before != self.uploaded.len()
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.uploaded.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.uploaded.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::block::BlockCompaction;

    const GOLDEN: &str = include_str!("../../tests/testdata/shipper-v1/shipper.json");

    fn meta(ulid: &str, sources: &[&str]) -> BlockMeta {
        let mut m = BlockMeta::new(0, 1);
        m.ulid = ulid.to_string();
        m.compaction = BlockCompaction {
            level: if sources.len() > 1 { 2 } else { 1 },
            sources: sources.iter().map(|s| s.to_string()).collect(),
            parents: Vec::new(),
        };
        m
    }

    #[test]
    fn shipper_file_golden_v1_reads_and_writes_byte_equal() {
        let set = ShippedSet::decode(GOLDEN.as_bytes(), Path::new("golden")).unwrap();
        assert_eq!(set.len(), 2);
        assert!(set.covers(&meta(
            "01HF8ZJ1M8Y4QH7W0T5N3C2B1A",
            &["01HF8ZJ1M8Y4QH7W0T5N3C2B1A"]
        )));
        assert_eq!(String::from_utf8(set.encode()).unwrap(), GOLDEN);
    }

    #[test]
    fn shipper_file_other_version_or_garbage_is_refused() {
        let e =
            ShippedSet::decode(br#"{"version": 2, "uploaded": []}"#, Path::new("f")).unwrap_err();
        assert!(matches!(e, StateError::Version { got: 2, .. }), "{e}");
        let e = ShippedSet::decode(b"[1,2]", Path::new("f")).unwrap_err();
        assert!(matches!(e, StateError::Malformed { .. }), "{e}");
    }

    #[test]
    fn shipped_set_merged_block_is_covered_by_its_sources_and_pruned_with_them() {
        let mut set = ShippedSet::default();
        let (a, b) = (meta("A", &["A"]), meta("B", &["B"]));
        let merged = meta("M", &["A", "B"]);
        set.add(&a);
        assert!(set.covers(&a) && !set.covers(&b) && !set.covers(&merged));
        set.add(&b);
        assert!(set.covers(&merged));
        // A and B merged away locally: the merged block keeps them.
        assert!(!set.retain_local(std::slice::from_ref(&merged)));
        assert!(set.covers(&merged));
        assert!(set.retain_local(&[]));
        assert!(set.is_empty());
    }

    #[test]
    fn shipper_file_save_and_load_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(SHIPPER_FILE);
        assert!(ShippedSet::load(&path).unwrap().is_empty());
        let mut set = ShippedSet::default();
        set.add(&meta("A", &["A"]));
        set.save(&path).unwrap();
        assert_eq!(ShippedSet::load(&path).unwrap(), set);
    }
}
