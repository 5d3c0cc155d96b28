//! The bucket's block layout, shared by every role that reads or writes
//! it (shipper, store, compactor): object keys, reading and checking an
//! uploaded `meta.json` with its `thanos` section, which complete blocks
//! another complete block supersedes, and moving whole blocks between the
//! bucket and a local directory a piece at a time.
//!
//! Layout (docs/format/shipper.md, "The bucket"): `<prefix>/<ulid>/` holds
//! `chunks/NNNNNN`, `index`, optionally `tombstones`, then `meta.json`,
//! written LAST and create-only, so a prefix without it is incomplete and
//! ignored; `deletion-mark.json` (docs/format/deletion-mark.md) is added
//! by the compactor to a block that is to be deleted.
//!
//! Everything read from the bucket is hostile: a `meta.json` that is too
//! large, does not parse, names another block or an impossible range is
//! reported as [`MetaRead::Hostile`], never trusted and never a panic.
//! Owns no state and no local directory of its own; callers say where.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, PutMode, PutOptions, PutPayload, WriteMultipart};
use serde::Deserialize;

use crate::storage::block::{
    BlockMeta, CHUNKS_DIR, INDEX_FILE, META_FILE, META_VERSION, TOMBSTONES_FILE,
};

/// Name of the compactor's deletion mark inside a block prefix
/// (docs/format/deletion-mark.md).
pub const DELETION_MARK_FILE: &str = "deletion-mark.json";
/// Largest `meta.json` (or deletion mark) read; a larger one (not written
/// by Tidemark) makes its block ignored instead of filling memory.
pub const MAX_META_BYTES: u64 = 4 << 20;
/// Bytes fetched per GET while downloading a file (bounds memory).
pub const PIECE_BYTES: u64 = 16 << 20;

/// A bucket or local file operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The bucket refused or did not answer.
    #[error("object storage: {op} {key}")]
    Bucket {
        /// What was being done.
        op: &'static str,
        /// The object key or prefix.
        key: String,
        /// The client's error.
        #[source]
        source: object_store::Error,
    },
    /// A local file operation failed.
    #[error("{op} {}", path.display())]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A local `meta.json` to upload is not a JSON object.
    #[error("{}: not a JSON object", path.display())]
    Meta {
        /// The file.
        path: PathBuf,
    },
}

/// `Result` of this module.
pub type Result<T, E = Error> = std::result::Result<T, E>;

fn bucket_err(op: &'static str, key: &ObjectPath) -> impl FnOnce(object_store::Error) -> Error {
    let key = key.to_string();
    move |source| Error::Bucket { op, key, source }
}

fn io_err(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.to_path_buf();
    move |source| Error::Io { op, path, source }
}

/// Block prefixes are named by a 26-character ULID.
pub fn is_block_name(name: &str) -> bool {
    name.len() == 26 && name.bytes().all(|c| c.is_ascii_alphanumeric())
}

/// The bucket's root under `prefix` (`None` for no prefix).
pub fn root(prefix: &str) -> Option<ObjectPath> {
    (!prefix.is_empty()).then(|| ObjectPath::from(prefix))
}

/// The prefix of block `ulid`.
pub fn block_prefix(prefix: &str, ulid: &str) -> ObjectPath {
    match root(prefix) {
        None => ObjectPath::from(ulid),
        Some(r) => r.child(ulid),
    }
}

/// The key of `rel` (`index`, `chunks/000001`, ...) in block `ulid`.
pub fn block_key(prefix: &str, ulid: &str, rel: &str) -> ObjectPath {
    if prefix.is_empty() {
        ObjectPath::from(format!("{ulid}/{rel}"))
    } else {
        ObjectPath::from(format!("{prefix}/{ulid}/{rel}"))
    }
}

/// An uploaded block's `meta.json`: the local meta plus what the `thanos`
/// section says of the stream it belongs to.
#[derive(Debug, Clone, PartialEq)]
pub struct BucketMeta {
    /// The Prometheus part (docs/format/meta.md).
    pub meta: BlockMeta,
    /// `thanos.labels`: the stream (blocks of two streams never merge).
    pub labels: BTreeMap<String, String>,
    /// `thanos.downsample.resolution` (0: raw data).
    pub resolution: i64,
    /// `thanos.source`: `sidecar` (a node's shipper), `compactor`, ...
    pub source: String,
}

impl BucketMeta {
    /// Whether `self` and `other` belong to one stream.
    pub fn same_stream(&self, other: &BucketMeta) -> bool {
        self.labels == other.labels && self.resolution == other.resolution
    }
}

#[derive(Deserialize)]
struct RawMeta {
    #[serde(flatten)]
    meta: BlockMeta,
    #[serde(default)]
    thanos: Option<RawThanos>,
}

#[derive(Deserialize, Default)]
struct RawThanos {
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    downsample: RawDownsample,
    #[serde(default)]
    source: String,
}

#[derive(Deserialize, Default)]
struct RawDownsample {
    #[serde(default)]
    resolution: i64,
}

/// What reading a block's `meta.json` found.
#[derive(Debug)]
pub enum MetaRead {
    /// A complete block.
    Complete(Box<BucketMeta>),
    /// No `meta.json`: an upload in progress or cut short.
    Missing,
    /// A `meta.json` that cannot be trusted, and why; the block is skipped.
    Hostile(String),
}

/// Checks the body of block `ulid`'s `meta.json`.
pub fn parse_meta(ulid: &str, body: &[u8]) -> MetaRead {
    let raw: RawMeta = match serde_json::from_slice(body) {
        Ok(r) => r,
        Err(e) => return MetaRead::Hostile(format!("does not parse: {e}")),
    };
    let m = raw.meta;
    let why = if m.ulid != ulid {
        Some(format!("names block {:?}", m.ulid))
    } else if m.version != META_VERSION {
        Some(format!("version {} (want {META_VERSION})", m.version))
    } else if m.min_time >= m.max_time {
        Some(format!(
            "impossible range minTime {} >= maxTime {}",
            m.min_time, m.max_time
        ))
    } else if m.max_time.checked_sub(m.min_time).is_none() {
        Some(format!(
            "range minTime {} maxTime {} overflows",
            m.min_time, m.max_time
        ))
    } else if m.compaction.level == 0 {
        Some("compaction level 0".to_string())
    } else {
        None
    };
    if let Some(why) = why {
        return MetaRead::Hostile(why);
    }
    let thanos = raw.thanos.unwrap_or_default();
    MetaRead::Complete(Box::new(BucketMeta {
        meta: m,
        labels: thanos.labels,
        resolution: thanos.downsample.resolution,
        source: thanos.source,
    }))
}

/// Reads and checks block `ulid`'s `meta.json`.
///
/// # Errors
/// When the bucket fails (a missing object is [`MetaRead::Missing`]).
pub async fn read_meta(store: &dyn ObjectStore, prefix: &str, ulid: &str) -> Result<MetaRead> {
    let key = block_key(prefix, ulid, META_FILE);
    match read_small(store, &key).await? {
        Small::Missing => Ok(MetaRead::Missing),
        Small::TooLarge(size) => Ok(MetaRead::Hostile(format!(
            "{size} bytes, over the {MAX_META_BYTES}-byte limit"
        ))),
        Small::Body(b) => Ok(parse_meta(ulid, &b)),
    }
}

/// A small object's body, or why there is none.
#[derive(Debug)]
pub enum Small {
    /// The object.
    Body(Bytes),
    /// No such object.
    Missing,
    /// Larger than [`MAX_META_BYTES`] (its size); not read.
    TooLarge(u64),
}

/// Reads a small object (a `meta.json`, a deletion mark) whole, refusing
/// one over [`MAX_META_BYTES`] before reading its body.
///
/// # Errors
/// When the bucket fails.
pub async fn read_small(store: &dyn ObjectStore, key: &ObjectPath) -> Result<Small> {
    let body = match store.get(key).await {
        Ok(r) if r.meta.size > MAX_META_BYTES => return Ok(Small::TooLarge(r.meta.size)),
        Ok(r) => r.bytes().await,
        Err(e) => Err(e),
    };
    match body {
        Ok(b) => Ok(Small::Body(b)),
        Err(object_store::Error::NotFound { .. }) => Ok(Small::Missing),
        Err(e) => Err(bucket_err("GET", key)(e)),
    }
}

/// Blocks of `complete` whose data another complete block holds: one of
/// the same stream, of a higher compaction level, whose range covers
/// theirs and that names them as a parent or a source. (The stream and
/// range checks keep a stray or hostile `meta.json` from hiding, or
/// getting deleted, blocks it cannot hold.)
pub fn superseded(complete: &BTreeMap<String, BucketMeta>) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for m in complete.values() {
        let named = m
            .meta
            .compaction
            .parents
            .iter()
            .map(|p| &p.ulid)
            .chain(m.meta.compaction.sources.iter());
        for u in named {
            if *u == m.meta.ulid {
                continue;
            }
            let Some(old) = complete.get(u) else { continue };
            if old.meta.compaction.level < m.meta.compaction.level
                && old.same_stream(m)
                && old.meta.min_time >= m.meta.min_time
                && old.meta.max_time <= m.meta.max_time
            {
                out.insert(u.clone());
            }
        }
    }
    out
}

/// Downloads block `ulid` into `<dir>/<ulid>.download/`, a piece
/// ([`PIECE_BYTES`]) per GET, fsyncs each file and renames the directory
/// to `<dir>/<ulid>/` (so a half download never looks like a block).
/// Returns the bytes downloaded. Blocking file calls; run on a runtime
/// that tolerates them.
///
/// # Errors
/// On the first bucket or file error; the `.download` directory is left
/// for the caller's clean-up.
pub async fn download_block(
    store: &dyn ObjectStore,
    prefix: &str,
    ulid: &str,
    dir: &Path,
) -> Result<u64> {
    let block = block_prefix(prefix, ulid);
    let tmp = dir.join(format!("{ulid}{DOWNLOAD_SUFFIX}"));
    std::fs::create_dir_all(tmp.join(CHUNKS_DIR))
        .map_err(io_err("create download directory", &tmp))?;
    let mut files = Vec::new();
    for sub in [None, Some(CHUNKS_DIR)] {
        let p = match sub {
            None => block.clone(),
            Some(s) => block.child(s),
        };
        let l = store
            .list_with_delimiter(Some(&p))
            .await
            .map_err(bucket_err("LIST", &p))?;
        for o in l.objects {
            let Some(name) = o.location.filename().map(str::to_string) else {
                continue;
            };
            // Names are the bucket's: only plain file names are written,
            // and the compactor's mark is not part of the block.
            if name.contains(['/', '\\']) || name.starts_with('.') || name == DELETION_MARK_FILE {
                continue;
            }
            let rel = match sub {
                None => PathBuf::from(&name),
                Some(s) => Path::new(s).join(&name),
            };
            files.push((o.location, rel, o.size));
        }
    }
    let mut total = 0u64;
    for (key, rel, size) in files {
        let path = tmp.join(&rel);
        let mut f = std::fs::File::create(&path).map_err(io_err("create", &path))?;
        let mut at = 0u64;
        while at < size {
            let end = at.saturating_add(PIECE_BYTES).min(size);
            let piece = store
                .get_range(&key, at..end)
                .await
                .map_err(bucket_err("GET", &key))?;
            f.write_all(&piece).map_err(io_err("write", &path))?;
            at = end;
        }
        f.sync_all().map_err(io_err("fsync", &path))?;
        total = total.saturating_add(size);
    }
    let dst = dir.join(ulid);
    std::fs::rename(&tmp, &dst).map_err(io_err("rename downloaded block", &tmp))?;
    Ok(total)
}

/// Suffix of a block directory being downloaded.
pub const DOWNLOAD_SUFFIX: &str = ".download";

/// What goes into an uploaded block's `thanos` section.
#[derive(Debug, Clone)]
pub struct ThanosSection {
    /// The stream's labels.
    pub labels: BTreeMap<String, String>,
    /// Who uploads: `sidecar` (a node's shipper) or `compactor`.
    pub source: &'static str,
}

/// How an upload ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Uploaded {
    /// Uploaded now; bytes sent.
    Now {
        /// Bytes of all files, `meta.json` included.
        bytes: u64,
    },
    /// `meta.json` was already in the bucket: an earlier try completed it.
    AlreadyPresent,
}

/// Uploads the local block directory `dir` as block `ulid`: chunk
/// segments, index, tombstones (each overwriting what a cut-short try
/// left), then `meta.json` LAST with a create-only put and `thanos` added.
/// Files above `part_size` go up as multipart uploads of that size.
/// `hook` is called with `chunks_uploaded` and `files_uploaded`.
///
/// # Errors
/// On the first file or bucket error; a retry uploads the block again.
pub async fn upload_block(
    store: &Arc<dyn ObjectStore>,
    prefix: &str,
    dir: &Path,
    ulid: &str,
    part_size: u64,
    thanos: &ThanosSection,
    hook: &(dyn Fn(&str) + Sync),
) -> Result<Uploaded> {
    let meta_key = block_key(prefix, ulid, META_FILE);
    match store.head(&meta_key).await {
        Ok(_) => return Ok(Uploaded::AlreadyPresent),
        Err(object_store::Error::NotFound { .. }) => {}
        Err(e) => return Err(bucket_err("HEAD", &meta_key)(e)),
    }
    let files = block_files(dir)?;
    let mut bytes = 0u64;
    let mut listed = Vec::new();
    let mut segments = Vec::new();
    for rel in &files {
        if rel == INDEX_FILE {
            hook("chunks_uploaded");
        }
        let size = upload_file(
            store,
            part_size,
            &dir.join(rel),
            block_key(prefix, ulid, rel),
        )
        .await?;
        bytes = bytes.saturating_add(size);
        listed.push(serde_json::json!({"rel_path": rel, "size_bytes": size}));
        if let Some(seg) = rel.strip_prefix("chunks/") {
            segments.push(seg.to_string());
        }
    }
    hook("files_uploaded");
    let meta_path = dir.join(META_FILE);
    let local = std::fs::read(&meta_path).map_err(io_err("read", &meta_path))?;
    let mut meta: serde_json::Value = serde_json::from_slice(&local).map_err(|_| Error::Meta {
        path: meta_path.clone(),
    })?;
    listed.push(serde_json::json!({"rel_path": META_FILE}));
    let section = serde_json::json!({
        "version": 1,
        "labels": thanos.labels,
        "downsample": {"resolution": 0},
        "source": thanos.source,
        "segment_files": segments,
        "files": listed,
    });
    meta.as_object_mut()
        .ok_or(Error::Meta { path: meta_path })?
        .insert("thanos".into(), section);
    let body = serde_json::to_vec_pretty(&meta).expect("a JSON value always serializes");
    bytes = bytes.saturating_add(body.len() as u64);
    let put = store
        .put_opts(
            &meta_key,
            PutPayload::from(body),
            PutOptions::from(PutMode::Create),
        )
        .await;
    match put {
        Ok(_) => Ok(Uploaded::Now { bytes }),
        // Another try got there first: the block is complete.
        Err(object_store::Error::AlreadyExists { .. }) => Ok(Uploaded::AlreadyPresent),
        Err(e) => Err(bucket_err("PUT (create-only)", &meta_key)(e)),
    }
}

/// Uploads one file (overwriting: a retry replaces a partial upload),
/// in parts when larger than `part_size`. Returns its size.
async fn upload_file(
    store: &Arc<dyn ObjectStore>,
    part_size: u64,
    path: &Path,
    key: ObjectPath,
) -> Result<u64> {
    let size = std::fs::metadata(path).map_err(io_err("read", path))?.len();
    if size <= part_size {
        let data = std::fs::read(path).map_err(io_err("read", path))?;
        let len = data.len() as u64;
        store
            .put(&key, PutPayload::from(Bytes::from(data)))
            .await
            .map_err(bucket_err("PUT", &key))?;
        return Ok(len);
    }
    let part = usize::try_from(part_size).unwrap_or(usize::MAX);
    let upload = store
        .put_multipart(&key)
        .await
        .map_err(bucket_err("start multipart upload", &key))?;
    let mut w = WriteMultipart::new_with_chunk_size(upload, part);
    let mut f = std::fs::File::open(path).map_err(io_err("read", path))?;
    let mut buf = vec![0u8; part.min(8 << 20)];
    let mut total = 0u64;
    loop {
        let n = match std::io::Read::read(&mut f, &mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                let _ = w.abort().await;
                return Err(io_err("read", path)(e));
            }
        };
        if let Err(e) = w.wait_for_capacity(2).await {
            let _ = w.abort().await;
            return Err(bucket_err("upload part", &key)(e));
        }
        w.write(&buf[..n]);
        total = total.saturating_add(n as u64);
    }
    w.finish()
        .await
        .map_err(bucket_err("complete multipart upload", &key))?;
    Ok(total)
}

/// A block's files to upload, in order: chunk segments, index, tombstones
/// (`meta.json` is uploaded separately, last).
fn block_files(dir: &Path) -> Result<Vec<String>> {
    let chunks = dir.join(CHUNKS_DIR);
    let mut segments: Vec<String> = std::fs::read_dir(&chunks)
        .map_err(io_err("read", &chunks))?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_file())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    segments.sort();
    let mut out: Vec<String> = segments
        .into_iter()
        .map(|s| format!("{CHUNKS_DIR}/{s}"))
        .collect();
    out.push(INDEX_FILE.to_string());
    if dir.join(TOMBSTONES_FILE).exists() {
        out.push(TOMBSTONES_FILE.to_string());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::block::{BlockCompaction, BlockDesc};

    fn meta(ulid: &str, level: u32, sources: &[&str], parents: &[&str]) -> BucketMeta {
        let mut m = BlockMeta::new(0, 1);
        m.ulid = ulid.to_string();
        m.compaction = BlockCompaction {
            level,
            sources: sources.iter().map(|s| s.to_string()).collect(),
            parents: parents
                .iter()
                .map(|p| BlockDesc {
                    ulid: p.to_string(),
                    min_time: 0,
                    max_time: 1,
                })
                .collect(),
        };
        BucketMeta {
            meta: m,
            labels: BTreeMap::from([("replica".to_string(), "a".to_string())]),
            resolution: 0,
            source: "sidecar".to_string(),
        }
    }

    #[test]
    fn parents_and_sources_of_a_higher_level_block_are_superseded() {
        let mut other_stream = meta("e2", 2, &["e"], &["e"]);
        other_stream.labels.insert("replica".into(), "b".into());
        let mut wider = meta("f", 1, &["f"], &[]);
        wider.meta.max_time = 5;
        let all: BTreeMap<String, BucketMeta> = [
            meta("a", 1, &["a"], &[]),
            meta("b", 1, &["b"], &[]),
            meta("c", 1, &["c"], &[]),
            // Merged from a and b (b named as a source only).
            meta("ab", 2, &["a", "b"], &["a"]),
            // Level 1 blocks never supersede one another.
            meta("d", 1, &["d", "c"], &[]),
            // Another stream's block never supersedes.
            meta("e", 1, &["e"], &[]),
            other_stream,
            // Nor one whose range does not cover the source's.
            wider,
            meta("f2", 2, &["f"], &["f"]),
        ]
        .into_iter()
        .map(|m| (m.meta.ulid.clone(), m))
        .collect();
        let got: Vec<String> = superseded(&all).into_iter().collect();
        assert_eq!(got, ["a", "b"]);
    }

    #[test]
    fn block_names_are_26_alphanumerics() {
        assert!(is_block_name("01HZZZZZZZZZZZZZZZZZZZZZZZ"));
        assert!(!is_block_name("01HZZZZZZZZZZZZZZZZZZZZZZ"));
        assert!(!is_block_name("01HZZZZZZZZZZZZZZZZZZZZZ.."));
        assert!(!is_block_name("01HZZZZZZZZZZZZZZZZZZZZZ/Z"));
    }

    #[test]
    fn hostile_meta_json_is_named_never_trusted() {
        let u = "01HZZZZZZZZZZZZZZZZZZZZZZZ";
        let good = serde_json::json!({
            "ulid": u, "minTime": 0, "maxTime": 10, "version": 1,
            "compaction": {"level": 1, "sources": [u]},
            "thanos": {"labels": {"replica": "a"}, "source": "sidecar", "downsample": {"resolution": 0}},
        });
        let MetaRead::Complete(m) = parse_meta(u, good.to_string().as_bytes()) else {
            panic!("good meta refused")
        };
        assert_eq!(m.labels["replica"], "a");
        assert_eq!(m.source, "sidecar");
        let with = |k: &str, v: serde_json::Value| {
            let mut j = good.clone();
            j[k] = v;
            j.to_string()
        };
        for (body, want) in [
            ("{not json".to_string(), "does not parse"),
            ("[]".to_string(), "does not parse"),
            (
                with("ulid", "01HAAAAAAAAAAAAAAAAAAAAAAA".into()),
                "names block",
            ),
            (with("maxTime", 0.into()), "impossible range"),
            (with("minTime", i64::MIN.into()), "overflows"),
            (with("version", 7.into()), "version 7"),
            (
                with("compaction", serde_json::json!({"level": 0})),
                "level 0",
            ),
            (with("minTime", "x".into()), "does not parse"),
        ] {
            match parse_meta(u, body.as_bytes()) {
                MetaRead::Hostile(why) => assert!(why.contains(want), "{body}: {why}"),
                other => panic!("{body}: {other:?}"),
            }
        }
    }
}
