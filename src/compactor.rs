//! The compactor role (`tidemark compact`, Thanos compactor's job in the
//! same binary): merges the small blocks of each stream in the bucket
//! into larger ones, marks and later deletes what they supersede, applies
//! bucket retention and clears abandoned uploads. A singleton: Kubernetes
//! runs one (a Deployment with `replicas: 1`, `strategy: Recreate`); two at
//! once would only merge the same blocks twice (the store de-duplicates
//! repeated samples), never lose data.
//!
//! A pass ([`Compactor::pass`]):
//! 1. lists the bucket once (every object, recursively) and reads each new
//!    block's `meta.json` (cached: `meta.json` is never overwritten) and
//!    each deletion mark; hostile `meta.json`s are skipped and counted;
//! 2. decides what to mark, delete and merge (`compactor/decide.rs`);
//! 3. writes the marks (covered or past retention), deletes blocks whose
//!    mark is older than the delete delay (`meta.json` FIRST, so readers
//!    stop taking it for a block, the mark LAST, so a cut-short deletion is
//!    found and finished), and deletes abandoned uploads;
//! 4. per stream (`thanos.labels`; two streams are never merged), plans
//!    merges with local compaction's planner
//!    ([`crate::storage::plan_merge`]: overlapping blocks first, then
//!    adjacent blocks filling a range of 2 h x 3^n), and for each:
//!    downloads the sources into `<data-dir>/merge/` a piece at a time,
//!    writes the merged block with the block writer
//!    ([`crate::storage::merge_blocks`]), uploads it with the shipper's
//!    upload (`meta.json` last, create-only, `thanos.source: compactor`,
//!    the stream's labels), and only then marks the sources.
//!
//! Crash safety: nothing is marked before the block covering it is
//! complete in the bucket, and nothing is deleted that is not marked and
//! still covered (or past retention). A crash before the merged block's
//! `meta.json` leaves a partial upload (ignored by readers, deleted after
//! the partial age; the merge is redone); after it, the next pass finds
//! the sources superseded and marks them. Owns `<data-dir>/merge/` and the
//! marks and deletions in the bucket; never writes a block another role
//! uploaded.

mod decide;
pub mod mark;
pub mod metrics;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use object_store::{ObjectMeta, ObjectStore, PutMode, PutOptions, PutPayload};

use crate::bucket::{self, BucketMeta, MetaRead, Small, ThanosSection, DELETION_MARK_FILE};
use crate::storage::block::{Block, META_FILE};
use crate::storage::CrashHook;
use decide::{decide, Partial, Reason, Timings};
pub use mark::DeletionMark;
pub use metrics::CompactMetrics;

/// `thanos.source` of blocks the compactor uploads (Thanos's
/// `metadata.CompactorSource`).
pub const COMPACTOR_SOURCE: &str = "compactor";
/// Scratch directory under the data directory, emptied at every pass.
const MERGE_DIR: &str = "merge";

/// How the compactor runs.
#[derive(Clone)]
pub struct CompactorOptions {
    /// The bucket client.
    pub store: Arc<dyn ObjectStore>,
    /// Key prefix (no leading or trailing `/`; empty for none).
    pub prefix: String,
    /// Files above this many bytes go up as multipart uploads this size.
    pub part_size: u64,
    /// Local scratch space for downloads and merged blocks.
    pub data_dir: PathBuf,
    /// Time between a deletion mark and the deletion (readers that still
    /// serve a marked block see the merged one within it).
    pub delete_delay: Duration,
    /// Blocks whose end is older than this are deleted (zero: never).
    pub retention: Duration,
    /// Blocks younger than this (by ULID time) are not merged yet, unless
    /// the compactor wrote them.
    pub consistency_delay: Duration,
    /// Smallest block range: the ingesting nodes' (2 h).
    pub block_range: Duration,
    /// Largest block a merge builds.
    pub max_block_duration: Duration,
    /// A prefix without `meta.json` (an abandoned upload) is deleted when
    /// its newest object is this old. An upload in progress writes its
    /// files one after another, so its newest object is minutes old at
    /// most; the role uses the delete delay (48 h by default, as Thanos's
    /// fixed two days), at least the consistency delay and an hour.
    pub partial_age: Duration,
    /// Test hook: called with `compact:<step>` (`downloaded`,
    /// `chunks_uploaded`, `files_uploaded`, `meta_uploaded`,
    /// `first_marked`, `meta_deleted`) and the block writer's steps.
    pub crash_hook: Option<CrashHook>,
}

/// Why a pass stopped before its end.
#[derive(Debug, thiserror::Error)]
pub enum PassError {
    /// Listing the bucket, or reading what it lists, failed.
    #[error("listing the bucket")]
    List(#[source] bucket::Error),
    /// The scratch directory could not be emptied or created.
    #[error("scratch directory {}", path.display())]
    Scratch {
        /// The directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// What one pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PassReport {
    /// Merged blocks uploaded.
    pub merged: usize,
    /// Deletion marks written.
    pub marked: usize,
    /// Marked blocks deleted.
    pub deleted: usize,
    /// Abandoned uploads (or cut-short deletions) deleted.
    pub partials_deleted: usize,
    /// Prefixes skipped for a `meta.json` that cannot be trusted.
    pub hostile: usize,
    /// Steps that failed (retried next pass).
    pub failures: usize,
}

/// One block prefix as listed.
#[derive(Default)]
struct Listed {
    objects: Vec<ObjectMeta>,
    has_meta: bool,
    has_mark: bool,
}

/// The compactor: options, metrics, and `meta.json`s read so far.
pub struct Compactor {
    opts: CompactorOptions,
    metrics: Arc<CompactMetrics>,
    metas: HashMap<String, BucketMeta>,
    /// Prefixes already reported hostile (warned once).
    hostile: HashSet<String>,
}

fn unix_ms(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl Compactor {
    /// A compactor; touches nothing until [`Compactor::pass`].
    pub fn new(opts: CompactorOptions, metrics: Arc<CompactMetrics>) -> Self {
        Self {
            opts,
            metrics,
            metas: HashMap::new(),
            hostile: HashSet::new(),
        }
    }

    fn hook(&self, step: &str) {
        if let Some(h) = self.opts.crash_hook {
            h(step);
        }
    }

    /// One pass at wall-clock time `now` (module doc). Step failures are
    /// logged, counted and retried next pass; the report says how many.
    ///
    /// # Errors
    /// When the bucket cannot be listed or the scratch directory made.
    pub async fn pass(&mut self, now: SystemTime) -> Result<PassReport, PassError> {
        let result = self.pass_inner(now).await;
        match &result {
            Ok(r) if r.failures == 0 => {
                self.metrics.pass("success");
                self.metrics.last_success.set(unix_ms(now) as f64 / 1000.0);
            }
            Ok(_) => self.metrics.pass("failure"),
            Err(e) => {
                self.metrics.pass("failure");
                self.metrics.failed(match e {
                    PassError::List(_) => "list",
                    PassError::Scratch { .. } => "merge",
                });
            }
        }
        result
    }

    async fn pass_inner(&mut self, now: SystemTime) -> Result<PassReport, PassError> {
        let now_ms = unix_ms(now);
        let scratch = self.opts.data_dir.join(MERGE_DIR);
        reset_dir(&scratch)?;
        let mut report = PassReport::default();
        let listed = self.list().await.map_err(PassError::List)?;
        // Blocks gone from the bucket leave the cache.
        self.metas.retain(|u, _| listed.contains_key(u));
        let mut complete = BTreeMap::new();
        let mut marks = BTreeMap::new();
        let mut partials = Vec::new();
        for (ulid, l) in &listed {
            if l.has_mark {
                marks.insert(ulid.clone(), self.mark_time(ulid, l).await?);
            }
            let meta = if l.has_meta {
                self.meta(ulid).await?
            } else {
                None
            };
            match meta {
                Some(Ok(m)) => {
                    complete.insert(ulid.clone(), m);
                }
                Some(Err(())) => report.hostile += 1,
                None => partials.push(Partial {
                    ulid: ulid.clone(),
                    newest_ms: l
                        .objects
                        .iter()
                        .map(|o| o.last_modified.timestamp_millis())
                        .max()
                        .unwrap_or(0),
                    marked: l.has_mark,
                }),
            }
        }
        self.metrics.hostile.set(report.hostile as i64);
        let timings = Timings {
            delete_delay_ms: ms(self.opts.delete_delay),
            retention_ms: ms(self.opts.retention),
            consistency_delay_ms: ms(self.opts.consistency_delay),
            partial_age_ms: ms(self.opts.partial_age),
        };
        let d = decide(&complete, &marks, &partials, now_ms, &timings);
        for u in &d.kept_marked {
            tracing::warn!(block = %u, "deletion mark on a block no complete block covers and within retention; kept");
        }
        for (u, reason) in &d.mark {
            match self.write_mark(u, reason.label().to_string(), now).await {
                Ok(()) => {
                    self.metrics.marked(reason.label());
                    report.marked += 1;
                    tracing::info!(block = %u, reason = reason.label(), "block marked for deletion");
                }
                Err(e) => self.failed(&mut report, "mark", u, &e),
            }
        }
        for (u, kind) in d
            .delete
            .iter()
            .map(|u| (u, "block"))
            .chain(d.delete_partial.iter().map(|u| (u, "partial")))
        {
            let Some(l) = listed.get(u) else { continue };
            match self.delete_prefix(l).await {
                Ok(()) => {
                    self.metrics.deleted(kind);
                    if kind == "block" {
                        report.deleted += 1;
                    } else {
                        report.partials_deleted += 1;
                    }
                    self.metas.remove(u);
                    tracing::info!(block = %u, kind, "deleted from the bucket");
                }
                Err(e) => self.failed(&mut report, "delete", u, &e),
            }
        }
        for (stream, ulids) in d.candidates {
            let mut cands: BTreeMap<String, BucketMeta> = ulids
                .into_iter()
                .filter_map(|u| complete.get(&u).map(|m| (u, m.clone())))
                .collect();
            // Each merge replaces two or more candidates by one.
            while cands.len() > 1 {
                let mut sorted: Vec<&BucketMeta> = cands.values().collect();
                sorted.sort_by_key(|b| (b.meta.min_time, b.meta.max_time));
                let metas: Vec<_> = sorted.iter().map(|b| &b.meta).collect();
                let Some(group) = crate::storage::plan_merge(
                    &metas,
                    ms(self.opts.block_range),
                    ms(self.opts.max_block_duration),
                ) else {
                    break;
                };
                let parents: Vec<BucketMeta> = group.iter().map(|&i| sorted[i].clone()).collect();
                for p in &parents {
                    cands.remove(&p.meta.ulid);
                }
                let names: Vec<&str> = parents.iter().map(|p| p.meta.ulid.as_str()).collect();
                match self.merge(&scratch, &stream.0, &parents, now).await {
                    Ok(Some(m)) => {
                        report.merged += 1;
                        report.marked += parents.len();
                        tracing::info!(block = %m.meta.ulid, sources = ?names, level = m.meta.compaction.level,
                            "merged block uploaded; sources marked for deletion");
                        cands.insert(m.meta.ulid.clone(), m);
                    }
                    Ok(None) => {
                        tracing::warn!(sources = ?names, "blocks hold no sample; not merged");
                    }
                    Err(e) => {
                        self.failed(&mut report, "merge", &names.join(","), &e);
                        break;
                    }
                }
            }
        }
        let _ = std::fs::remove_dir_all(&scratch);
        Ok(report)
    }

    fn failed(
        &self,
        report: &mut PassReport,
        op: &'static str,
        what: &str,
        e: &dyn std::fmt::Display,
    ) {
        self.metrics.failed(op);
        report.failures += 1;
        tracing::error!(op, block = %what, error = %e, "compaction step failed; retried next pass");
    }

    /// Every object of the bucket (under the prefix), by block prefix.
    async fn list(&self) -> Result<BTreeMap<String, Listed>, bucket::Error> {
        let root = bucket::root(&self.opts.prefix);
        let mut stream = self.opts.store.list(root.as_ref());
        let mut out: BTreeMap<String, Listed> = BTreeMap::new();
        while let Some(o) = stream.next().await {
            let o = o.map_err(|source| bucket::Error::Bucket {
                op: "LIST",
                key: self.opts.prefix.clone(),
                source,
            })?;
            let rel: Vec<String> = match &root {
                Some(r) => match o.location.prefix_match(r) {
                    Some(parts) => parts.map(|p| p.as_ref().to_string()).collect(),
                    None => continue,
                },
                None => o.location.parts().map(|p| p.as_ref().to_string()).collect(),
            };
            let [ulid, rest @ ..] = &rel[..] else {
                continue;
            };
            if !bucket::is_block_name(ulid) || rest.is_empty() {
                continue;
            }
            let e = out.entry(ulid.clone()).or_default();
            if rest.len() == 1 {
                e.has_meta |= rest[0] == META_FILE;
                e.has_mark |= rest[0] == DELETION_MARK_FILE;
            }
            e.objects.push(o);
        }
        Ok(out)
    }

    /// Block `ulid`'s meta (cached), `Some(Err(()))` when it cannot be
    /// trusted, `None` when gone since the listing.
    async fn meta(&mut self, ulid: &str) -> Result<Option<Result<BucketMeta, ()>>, PassError> {
        if let Some(m) = self.metas.get(ulid) {
            return Ok(Some(Ok(m.clone())));
        }
        let read = bucket::read_meta(self.opts.store.as_ref(), &self.opts.prefix, ulid)
            .await
            .map_err(PassError::List)?;
        Ok(match read {
            MetaRead::Complete(m) => {
                self.metas.insert(ulid.to_string(), (*m).clone());
                Some(Ok(*m))
            }
            MetaRead::Missing => None,
            MetaRead::Hostile(why) => {
                if self.hostile.insert(ulid.to_string()) {
                    tracing::warn!(block = %ulid, problem = %why, "meta.json cannot be trusted; block skipped (never merged, marked or deleted)");
                }
                Some(Err(()))
            }
        })
    }

    /// When block `ulid` was marked, ms: the mark's `deletion_time`, or
    /// the mark object's time when it does not parse.
    async fn mark_time(&self, ulid: &str, l: &Listed) -> Result<i64, PassError> {
        let key = bucket::block_key(&self.opts.prefix, ulid, DELETION_MARK_FILE);
        let written = l
            .objects
            .iter()
            .find(|o| o.location == key)
            .map_or(0, |o| o.last_modified.timestamp_millis());
        let body = bucket::read_small(self.opts.store.as_ref(), &key)
            .await
            .map_err(PassError::List)?;
        let parsed = match body {
            Small::Body(b) => DeletionMark::parse(ulid, &b),
            Small::Missing => Err("gone since the listing".to_string()),
            Small::TooLarge(n) => Err(format!("{n} bytes")),
        };
        Ok(match parsed {
            Ok(m) => m.deletion_time.saturating_mul(1000),
            Err(why) => {
                tracing::warn!(block = %ulid, problem = %why, "deletion mark unreadable; timed by its upload");
                written
            }
        })
    }

    async fn write_mark(
        &self,
        ulid: &str,
        details: String,
        now: SystemTime,
    ) -> Result<(), bucket::Error> {
        let mark = DeletionMark {
            id: ulid.to_string(),
            deletion_time: unix_ms(now) / 1000,
            version: mark::DELETION_MARK_VERSION,
            details,
        };
        let key = bucket::block_key(&self.opts.prefix, ulid, DELETION_MARK_FILE);
        match self
            .opts
            .store
            .put_opts(
                &key,
                PutPayload::from(mark.encode()),
                PutOptions::from(PutMode::Create),
            )
            .await
        {
            // An earlier pass marked it: the first mark's time counts.
            Ok(_) | Err(object_store::Error::AlreadyExists { .. }) => Ok(()),
            Err(source) => Err(bucket::Error::Bucket {
                op: "PUT (create-only)",
                key: key.to_string(),
                source,
            }),
        }
    }

    /// Deletes a block prefix: `meta.json` first (readers stop taking it
    /// for a block), the deletion mark last (a cut-short deletion stays
    /// marked and is finished next pass).
    async fn delete_prefix(&self, l: &Listed) -> Result<(), bucket::Error> {
        let rank = |o: &ObjectMeta| match o.location.filename() {
            Some(META_FILE) => 0,
            Some(DELETION_MARK_FILE) => 2,
            _ => 1,
        };
        let mut objects: Vec<&ObjectMeta> = l.objects.iter().collect();
        objects.sort_by_key(|o| rank(o));
        for o in objects {
            match self.opts.store.delete(&o.location).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(source) => {
                    return Err(bucket::Error::Bucket {
                        op: "DELETE",
                        key: o.location.to_string(),
                        source,
                    })
                }
            }
            if rank(o) == 0 {
                self.hook("compact:meta_deleted");
            }
        }
        Ok(())
    }

    /// Downloads `parents`, merges them, uploads the result and marks
    /// them. Returns the merged block's meta (`None`: nothing to merge).
    async fn merge(
        &mut self,
        scratch: &Path,
        labels: &BTreeMap<String, String>,
        parents: &[BucketMeta],
        now: SystemTime,
    ) -> Result<Option<BucketMeta>, MergeError> {
        reset_dir(scratch).map_err(MergeError::Scratch)?;
        let sources = scratch.join("sources");
        let out = scratch.join("out");
        for d in [&sources, &out] {
            std::fs::create_dir_all(d).map_err(|source| MergeError::Io {
                path: d.clone(),
                source,
            })?;
        }
        for p in parents {
            bucket::download_block(
                self.opts.store.as_ref(),
                &self.opts.prefix,
                &p.meta.ulid,
                &sources,
            )
            .await?;
        }
        self.hook("compact:downloaded");
        let dirs: Vec<PathBuf> = parents.iter().map(|p| sources.join(&p.meta.ulid)).collect();
        let (hook, out2) = (self.opts.crash_hook, out.clone());
        let written = tokio::task::spawn_blocking(move || {
            let blocks = dirs
                .iter()
                .map(|d| Block::open(d, true).map(Arc::new))
                .collect::<Result<Vec<_>, _>>()
                .map_err(crate::storage::Error::from)?;
            crate::storage::merge_blocks(&out2, &blocks, hook)
        })
        .await
        .map_err(|e| MergeError::Task(e.to_string()))??;
        let Some(meta) = written else {
            return Ok(None);
        };
        let thanos = ThanosSection {
            labels: labels.clone(),
            source: COMPACTOR_SOURCE,
        };
        bucket::upload_block(
            &self.opts.store,
            &self.opts.prefix,
            &out.join(&meta.ulid),
            &meta.ulid,
            self.opts.part_size,
            &thanos,
            &|step| self.hook(&format!("compact:{step}")),
        )
        .await?;
        self.hook("compact:meta_uploaded");
        self.metrics.merges.inc();
        self.metrics.blocks_merged.inc_by(parents.len() as u64);
        for (i, p) in parents.iter().enumerate() {
            self.write_mark(&p.meta.ulid, format!("compacted into {}", meta.ulid), now)
                .await?;
            self.metrics.marked(Reason::Compacted.label());
            if i == 0 {
                self.hook("compact:first_marked");
            }
        }
        let merged = BucketMeta {
            meta,
            labels: labels.clone(),
            resolution: 0,
            source: COMPACTOR_SOURCE.to_string(),
        };
        self.metas.insert(merged.meta.ulid.clone(), merged.clone());
        let _ = std::fs::remove_dir_all(scratch);
        Ok(Some(merged))
    }
}

/// Why one merge failed (the pass goes on with other streams).
#[derive(Debug, thiserror::Error)]
enum MergeError {
    #[error(transparent)]
    Bucket(#[from] bucket::Error),
    #[error("merging blocks")]
    Storage(#[from] crate::storage::Error),
    #[error("scratch directory")]
    Scratch(#[source] PassError),
    #[error("{}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("merge task: {0}")]
    Task(String),
}

/// Empties (or creates) `dir`.
fn reset_dir(dir: &Path) -> Result<(), PassError> {
    let err = |source| PassError::Scratch {
        path: dir.to_path_buf(),
        source,
    };
    match std::fs::remove_dir_all(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(err(e)),
    }
    std::fs::create_dir_all(dir).map_err(err)
}

/// Runs passes: one, or with `wait` one every `wait` until `stop`.
/// `on_pass` is told after each pass whether it succeeded. Returns
/// whether the last pass succeeded.
pub async fn run(
    mut compactor: Compactor,
    wait: Option<Duration>,
    on_pass: impl Fn(bool),
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> bool {
    loop {
        let ok = match compactor.pass(SystemTime::now()).await {
            Ok(r) => {
                tracing::info!(
                    merged = r.merged,
                    marked = r.marked,
                    deleted = r.deleted,
                    partials_deleted = r.partials_deleted,
                    hostile = r.hostile,
                    failures = r.failures,
                    "compaction pass finished"
                );
                r.failures == 0
            }
            Err(e) => {
                tracing::error!(error = %format!("{:#}", anyhow::Error::from(e)), "compaction pass failed");
                false
            }
        };
        on_pass(ok);
        let Some(interval) = wait else {
            return ok;
        };
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = stop.wait_for(|s| *s) => return ok,
        }
    }
}
