//! [`Db`]: the storage facade. Opens a data directory (locking it against a
//! second process), loads its persisted blocks, replays the WAL into the
//! head, then takes appends and serves queriers over head and blocks.
//! [`Db::compact`] moves old head data into blocks, merges blocks, applies
//! tombstones and retention. The only public entry point of the storage
//! layer.
//!
//! Layout of the data directory: `lock` (advisory lock file), `wal/` (see
//! `docs/format/wal.md`), one directory per block named by its ULID (see
//! `docs/format/index.md`, `meta.md`, `chunks-segment.md`,
//! `tombstones.md`), `quarantine/` for blocks that failed to open,
//! `snapshots/` for admin snapshots.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};

use crate::model::{Labels, Matcher};
use crate::storage::block::{Block, BlockCompaction, BlockError, BlockMeta, CHUNKS_DIR};
use crate::storage::compact::{
    self, io_err, BlockPlan, InputChunk, InputPart, InputSeries, TMP_CREATION_SUFFIX,
    TMP_DELETION_SUFFIX,
};
use crate::storage::error::{Error, Result};
use crate::storage::head::metadata_file::{self, HEAD_METADATA_FILE};
use crate::storage::head::snapshot::{self as head_snapshot, HEAD_SNAPSHOT_FILE};
use crate::storage::head::{
    AppendExtras, AppendOutcome, ExemplarStore, Head, HeadOptions, HeadReplayStats, HeadStats,
    MetadataLimits, MetadataStore, ResolvedSeries, SeriesHandle, SeriesSamples,
};
use crate::storage::querier::BlockList;
use crate::storage::shipping::ShipGate;
use crate::storage::wal::{self, ReplayStats, Wal};
use crate::storage::{Options, Querier};

/// Name of the directory corrupt blocks are moved into.
pub const QUARANTINE_DIR: &str = "quarantine";
/// Name of the directory admin snapshots are written into.
pub const SNAPSHOTS_DIR: &str = "snapshots";
/// Name of the write-ahead log's directory (`docs/format/wal.md`).
pub const WAL_DIR: &str = "wal";
/// Name of the advisory lock file held while a process has the store open.
pub const LOCK_FILE: &str = "lock";

/// What [`Db::open`] found and did.
#[derive(Debug, Clone, Default)]
pub struct OpenReport {
    /// What the WAL reader saw, including any repaired damage.
    pub wal: ReplayStats,
    /// What was applied to the head.
    pub head: HeadReplayStats,
    /// Wall time of the replay (head snapshot load plus WAL replay).
    pub replay_duration: Duration,
    /// Whether a head snapshot from a clean shutdown was loaded, so only
    /// WAL segments written after it were replayed.
    pub head_snapshot_loaded: bool,
    /// Whether the exemplars and metric metadata of a head persisted to
    /// blocks at the last clean shutdown were loaded (`head_metadata`,
    /// kept until the next one).
    pub head_metadata_loaded: bool,
    /// Blocks loaded.
    pub blocks: usize,
    /// Blocks that failed to open, moved to `quarantine/`, with the reason.
    pub quarantined: Vec<(PathBuf, String)>,
    /// Leftover directories removed: unfinished block writes and deletions,
    /// and blocks already merged into another.
    pub removed_leftovers: Vec<PathBuf>,
}

/// What [`Db::reload_blocks`] did.
#[derive(Debug, Default)]
pub struct ReloadReport {
    /// Block directories opened and now served.
    pub added: usize,
    /// Blocks no longer served (their directory is gone).
    pub removed: usize,
    /// Block directories that failed to open, with the reason.
    pub failed: Vec<(PathBuf, String)>,
}

/// What one [`Db::compact`] run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CompactionReport {
    /// Blocks written from the head.
    pub head_blocks: usize,
    /// Merges of blocks into a larger one.
    pub merges: usize,
    /// Blocks rewritten to drop deleted data.
    pub rewrites: usize,
    /// Blocks deleted by retention.
    pub retention_deleted: usize,
}

/// Counters and gauges of the storage layer, for self-monitoring.
#[derive(Debug, Clone, Default)]
pub struct StorageStats {
    /// Persisted blocks.
    pub blocks: usize,
    /// Bytes of persisted blocks.
    pub blocks_bytes: u64,
    /// Blocks written from the head, since start.
    pub head_compactions: u64,
    /// Block merges and tombstone rewrites, since start.
    pub merge_compactions: u64,
    /// Failed compaction runs, since start.
    pub compaction_failures: u64,
    /// Blocks deleted by retention, since start.
    pub retention_deleted_blocks: u64,
    /// Whether the store takes writes now: false from a failed WAL write or
    /// fsync (a full or failing disk) until [`Db::recover_writes`] succeeds.
    pub writable: bool,
    /// Times the WAL became writable again after a failure, since start.
    pub wal_recoveries: u64,
    /// Float samples stored out of order (inside the out-of-order window),
    /// since start.
    pub ooo_appended: u64,
    /// Blocks that failed their checks and were moved to `quarantine/`,
    /// since start (at open or by [`Db::check_deferred_blocks`]).
    pub quarantined_blocks: u64,
    /// Blocks served whose deferred checks have not run yet
    /// ([`Options::defer_block_checks`]).
    pub blocks_awaiting_checks: usize,
}

#[derive(Default)]
struct Counters {
    head_compactions: AtomicU64,
    merge_compactions: AtomicU64,
    compaction_failures: AtomicU64,
    retention_deleted_blocks: AtomicU64,
    wal_recoveries: AtomicU64,
    quarantined_blocks: AtomicU64,
    /// Durations of finished compaction steps not yet taken by the metrics
    /// exporter.
    durations: Mutex<Vec<f64>>,
}

/// An open database.
pub struct Db {
    dir: PathBuf,
    opts: Options,
    head: Arc<Head>,
    wal: Wal,
    /// Persisted blocks, sorted by min time. Swapped whole under the write
    /// lock; queriers share it and clone it on each read, which keeps the
    /// blocks they read alive.
    blocks: BlockList,
    /// Serialises everything that changes the block list or block files:
    /// compaction, retention, deletion, snapshots, deferred checks.
    compaction: Mutex<()>,
    /// Blocks served before their full checks ran
    /// ([`Options::defer_block_checks`]), oldest first; emptied by
    /// [`Db::check_deferred_blocks`], never added to after open. None of
    /// them is merged, rewritten, snapshotted or shipped until it passed.
    unchecked: Mutex<Vec<Arc<Block>>>,
    counters: Counters,
    closed: AtomicBool,
    report: OpenReport,
    /// The block shipper, when shipping is on (set once after open).
    ship_gate: OnceLock<Arc<dyn ShipGate>>,
    /// Set once [`Db::update_blocks`] served blocks another component
    /// opened (object storage): reads may then wait on the network.
    serves_outside_blocks: AtomicBool,
    /// Held for the life of the Db: the advisory lock on `<dir>/lock`.
    _lock: File,
}

impl Db {
    /// Opens (creating if needed) the database in `dir`: removes leftovers
    /// of interrupted block writes, loads blocks (quarantining any that fail
    /// their checks), then replays the WAL, skipping what blocks already hold.
    ///
    /// # Errors
    /// When the directory cannot be created or locked, or the WAL cannot be
    /// read or opened for writing. Damage in the WAL is repaired and damaged
    /// blocks are quarantined; both are logged and reported, not returned.
    pub fn open(dir: impl AsRef<Path>, opts: Options) -> Result<Db> {
        let dir = dir.as_ref().to_path_buf();
        compact::create_dir_all_durable(&dir).map_err(|source| Error::Io {
            op: "create data directory",
            path: dir.clone(),
            source,
        })?;
        let lock_path = dir.join(LOCK_FILE);
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|source| Error::Io {
                op: "open lock file",
                path: lock_path.clone(),
                source,
            })?;
        lock_waiting(&lock, &lock_path, &dir)?;

        let mut report = OpenReport::default();
        let check = if opts.defer_block_checks {
            BlockChecks::Deferred
        } else {
            BlockChecks::AtOpen {
                verify_chunks: opts.verify_chunks_on_open,
            }
        };
        let blocks = load_blocks(&dir, check, &mut report)?;
        report.blocks = blocks.len();
        let unchecked = match check {
            BlockChecks::Deferred => blocks.clone(),
            BlockChecks::AtOpen { .. } => Vec::new(),
        };

        // A block persisted at shutdown implies the floor the head had
        // then, not its end (`BlockMeta::implied_head_floor`).
        let floor = blocks.iter().map(|b| b.meta().implied_head_floor()).max();
        let new_head = || {
            let head = Arc::new(Head::new(HeadOptions {
                block_range_ms: opts.block_range_ms,
                max_series_per_metric: opts.max_series_per_metric,
                stripes: opts.stripes,
                max_exemplars: opts.max_exemplars,
                metadata: MetadataLimits {
                    max_families: opts.max_metadata_families,
                    max_bytes: opts.max_metadata_bytes,
                },
                ooo_window_ms: opts.out_of_order_time_window_ms,
            }));
            if let Some(floor) = floor {
                head.set_min_valid_floor(floor);
            }
            head
        };
        let wal_dir = dir.join(WAL_DIR);
        let started = Instant::now();
        let mut head_stats = HeadReplayStats::default();
        let mut head = new_head();
        let mut wal_stats = None;
        let snap_path = dir.join(HEAD_SNAPSHOT_FILE);
        let meta_path = dir.join(HEAD_METADATA_FILE);
        if snap_path.exists() {
            // The metadata file carries what the snapshot does not
            // (exemplars, metric metadata) up to the same WAL segment;
            // without it the snapshot alone would lose them.
            let loaded = head_snapshot::load(&head, &snap_path)
                .map_err(|e| e.to_string())
                .and_then(|segment| {
                    metadata_file::load(&head, &meta_path, segment)
                        .map(|()| segment)
                        .map_err(|e| e.to_string())
                });
            match loaded {
                Ok(segment) => {
                    wal_stats = wal::replay_after(&wal_dir, head.interner(), segment, |rec| {
                        head.apply_record(rec, &mut head_stats)
                    })?;
                    if wal_stats.is_none() {
                        tracing::warn!("head snapshot is older than the WAL checkpoint; replaying the WAL instead");
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "head snapshot unusable; replaying the WAL instead");
                }
            }
            if wal_stats.is_none() {
                head = new_head();
                head_stats = HeadReplayStats::default();
            }
            // Used once: from here on the WAL alone is the truth.
            fs::remove_file(&snap_path).map_err(io_err("remove head snapshot", &snap_path))?;
            compact::sync_dir(&dir)?;
        }
        if meta_path.exists() {
            // Written after the head was persisted at shutdown, the file is
            // the only copy of its exemplars: loaded before the WAL (whose
            // exemplars are newer) and kept until the next clean shutdown
            // writes it again. A snapshot's companion is used once.
            let persisted = wal_stats.is_none()
                && match metadata_file::load_persisted(&head, &meta_path) {
                    Ok(p) => p,
                    Err(e) => {
                        tracing::warn!(error = %e, "head metadata unusable; exemplars of the persisted head are lost");
                        false
                    }
                };
            report.head_metadata_loaded = persisted;
            if !persisted {
                fs::remove_file(&meta_path).map_err(io_err("remove head metadata", &meta_path))?;
                compact::sync_dir(&dir)?;
            }
        }
        report.head_snapshot_loaded = wal_stats.is_some();
        let wal_stats = match wal_stats {
            Some(s) => s,
            None => wal::replay(&wal_dir, head.interner(), |rec| {
                head.apply_record(rec, &mut head_stats)
            })?,
        };
        if let Some(floor) = floor {
            // Series whose samples all live in blocks keep no head entry.
            head.truncate(floor);
        }
        report.wal = wal_stats;
        report.head = head_stats;
        report.replay_duration = started.elapsed();
        let wal = Wal::open(&wal_dir, opts.wal)?;
        let counters = Counters::default();
        counters
            .quarantined_blocks
            .store(report.quarantined.len() as u64, Ordering::Relaxed);
        Ok(Db {
            dir,
            opts,
            head,
            wal,
            blocks: Arc::new(RwLock::new(blocks)),
            compaction: Mutex::new(()),
            unchecked: Mutex::new(unchecked),
            counters,
            closed: AtomicBool::new(false),
            report,
            ship_gate: OnceLock::new(),
            serves_outside_blocks: AtomicBool::new(false),
            _lock: lock,
        })
    }

    /// Installs the block shipper (once; later calls are ignored). From
    /// then on a block is deleted by retention, merged or rewritten only
    /// once [`ShipGate::is_shipped`] says its data is in object storage,
    /// and the shipper is woken whenever a block is completed.
    pub fn set_ship_gate(&self, gate: Arc<dyn ShipGate>) {
        let _ = self.ship_gate.set(gate);
    }

    /// Whether `b` may leave the disk (always, without a shipper).
    fn is_shipped(&self, b: &Block) -> bool {
        self.ship_gate.get().is_none_or(|g| g.is_shipped(b.meta()))
    }

    fn notify_completed(&self, meta: &BlockMeta) {
        if let Some(g) = self.ship_gate.get() {
            g.block_completed(meta);
        }
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// What opening found (replay counts, repaired WAL damage).
    pub fn open_report(&self) -> &OpenReport {
        &self.report
    }

    /// Appends a batch; returns once accepted samples are durable per the
    /// WAL fsync policy. Rejected samples are listed in the outcome; the
    /// rest of the batch is stored. Safe from many threads at once.
    ///
    /// # Errors
    /// [`Error::Closed`] after [`Db::close`]; [`Error::Wal`] when the WAL
    /// cannot be written (nothing of the batch is acknowledged).
    pub fn append(&self, batch: &[SeriesSamples]) -> Result<AppendOutcome> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        self.head.append(batch, &self.wal)
    }

    /// [`Db::append_hinted`] with the exemplars and metric metadata that
    /// came with the batch: they are logged in the same WAL entry as its
    /// samples and stored in the head ([`Db::exemplars`], [`Db::metadata`]).
    /// What was dropped is counted in [`AppendOutcome::extras`].
    ///
    /// # Errors
    /// As [`Db::append`].
    pub fn append_with(
        &self,
        batch: &[SeriesSamples],
        hints: &[Option<SeriesHandle>],
        extras: &AppendExtras,
    ) -> Result<(AppendOutcome, ResolvedSeries)> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        self.head.append_with(batch, hints, extras, &self.wal)
    }

    /// [`Db::append_with`] without waiting for the WAL fsync: the samples
    /// are logged and visible, and the write may be acknowledged once the
    /// returned [`wal::Durable`] says so (the HTTP write path waits off
    /// its ingest threads).
    ///
    /// # Errors
    /// As [`Db::append`]; [`wal::Durable::wait`] reports a failed fsync.
    pub fn append_pending(
        &self,
        batch: &[SeriesSamples],
        hints: &[Option<SeriesHandle>],
        extras: &AppendExtras,
    ) -> Result<(AppendOutcome, ResolvedSeries, wal::Durable)> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        self.head.append_pending(batch, hints, extras, &self.wal)
    }

    /// The head's exemplars (durable with the WAL).
    pub fn exemplars(&self) -> &ExemplarStore {
        self.head.exemplars()
    }

    /// The head's metric metadata (durable with the WAL).
    pub fn metadata(&self) -> &MetadataStore {
        self.head.metadata()
    }

    /// `labels` with the head's copies of their strings, so that the head
    /// finds them by pointer comparison (remote-write series cache).
    pub fn intern_labels(&self, labels: &Labels) -> Labels {
        labels.interned(self.head.interner())
    }

    /// [`Db::append`] where `hints[i]`, if present, is the series of
    /// `batch[i]` as an earlier append returned it, so the head need not
    /// look its labels up. Returns the series resolved by labels, to pass
    /// as hints next time (the remote-write series cache keeps them).
    ///
    /// # Errors
    /// As [`Db::append`].
    pub fn append_hinted(
        &self,
        batch: &[SeriesSamples],
        hints: &[Option<SeriesHandle>],
    ) -> Result<(AppendOutcome, ResolvedSeries)> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        self.head.append_hinted(batch, hints, &self.wal)
    }

    /// Whether the store takes writes now (see [`StorageStats::writable`]).
    /// Reads are served either way.
    pub fn is_writable(&self) -> bool {
        !self.wal.is_poisoned()
    }

    /// After a failed WAL write or fsync, tries to make the store writable
    /// again (see [`Wal::recover`]); call it periodically while
    /// [`Db::is_writable`] is false. Returns whether the store is writable.
    pub fn recover_writes(&self) -> bool {
        if self.closed.load(Ordering::Acquire) {
            return false;
        }
        match self.wal.recover() {
            Ok(true) => {
                self.counters.wal_recoveries.fetch_add(1, Ordering::Relaxed);
                true
            }
            Ok(false) => true,
            Err(e) => {
                tracing::debug!(error = %e, "WAL still cannot be written");
                false
            }
        }
    }

    /// A read view over `[mint, maxt]` (inclusive, ms) of the head and
    /// every block overlapping it.
    pub fn querier(&self, mint: i64, maxt: i64) -> Querier {
        Querier::new(self.head.clone(), self.blocks.clone(), mint, maxt)
    }

    /// Makes the served blocks match the block directories now in the data
    /// directory: opens directories not yet served and drops blocks whose
    /// directory is gone (queries already running keep them). For a
    /// read-only `Db` whose directory another component fills (the store
    /// role's bucket cache); never called on an ingesting node, whose
    /// blocks change only through compaction. A directory that fails to
    /// open is reported, not quarantined, and not served.
    ///
    /// # Errors
    /// When the data directory cannot be read.
    pub fn reload_blocks(&self) -> Result<ReloadReport> {
        let dir = &self.dir;
        let mut on_disk = std::collections::BTreeSet::new();
        for e in fs::read_dir(dir).map_err(io_err("read data directory", dir))? {
            let e = e.map_err(io_err("read data directory", dir))?;
            let path = e.path();
            if let Some(name) = path.file_name().and_then(|n| n.to_str()) {
                if is_block_name(name) && path.is_dir() {
                    on_disk.insert(name.to_string());
                }
            }
        }
        let current: Vec<Arc<Block>> = self.blocks.read().clone();
        let mut report = ReloadReport::default();
        let gone: Vec<Arc<Block>> = current
            .iter()
            .filter(|b| !on_disk.contains(&b.meta().ulid))
            .cloned()
            .collect();
        let mut new = Vec::new();
        for name in &on_disk {
            if current.iter().any(|b| &b.meta().ulid == name) {
                continue;
            }
            let path = dir.join(name);
            let check = BlockChecks::AtOpen {
                verify_chunks: self.opts.verify_chunks_on_open,
            };
            match open_block_retrying(&path, check) {
                Ok(b) => new.push(Arc::new(b)),
                Err(e) => report.failed.push((path, e.to_string())),
            }
        }
        report.added = new.len();
        report.removed = gone.len();
        if !new.is_empty() || !gone.is_empty() {
            self.insert_blocks(&gone, new);
        }
        Ok(report)
    }

    /// Serves `add` besides the blocks already served, and stops serving
    /// those whose ULID is in `remove` (queries already running keep
    /// them). For a read-only `Db` whose blocks another component opens
    /// (the store role's blocks in object storage, [`Block::open_remote`]);
    /// never called on an ingesting node.
    pub fn update_blocks(&self, add: Vec<Arc<Block>>, remove: &[String]) {
        let gone: Vec<Arc<Block>> = self
            .blocks
            .read()
            .iter()
            .filter(|b| remove.contains(&b.meta().ulid))
            .cloned()
            .collect();
        if !add.is_empty() {
            self.serves_outside_blocks.store(true, Ordering::Relaxed);
        }
        if !add.is_empty() || !gone.is_empty() {
            self.insert_blocks(&gone, add);
        }
    }

    /// Whether every read is answered from this process's memory and
    /// local files: false once [`Db::update_blocks`] added blocks that may
    /// read from object storage.
    pub fn reads_locally(&self) -> bool {
        !self.serves_outside_blocks.load(Ordering::Relaxed)
    }

    /// The first and last sample times held (head and blocks), `None` when
    /// empty. Cheap: reads the head's bounds and the block metas.
    pub fn time_range(&self) -> Option<(i64, i64)> {
        let mut range = match (self.head.min_t(), self.head.max_t()) {
            (Some(lo), Some(hi)) => Some((lo, hi)),
            _ => None,
        };
        for b in self.blocks.read().iter() {
            // A block's max_time is exclusive.
            let (lo, hi) = (b.meta().min_time, b.meta().max_time.saturating_sub(1));
            range = Some(range.map_or((lo, hi), |(a, z)| (a.min(lo), z.max(hi))));
        }
        range
    }

    /// Metadata of the persisted blocks, oldest first.
    pub fn blocks(&self) -> Vec<BlockMeta> {
        self.blocks
            .read()
            .iter()
            .map(|b| b.meta().clone())
            .collect()
    }

    /// Whether the block `ulid` is served but its deferred checks have not
    /// passed yet ([`Db::check_deferred_blocks`]): it must not leave the
    /// node (the shipper waits).
    pub fn awaits_checks(&self, ulid: &str) -> bool {
        self.unchecked.lock().iter().any(|b| b.meta().ulid == ulid)
    }

    /// Counters and gauges for self-monitoring.
    pub fn storage_stats(&self) -> StorageStats {
        let blocks = self.blocks.read();
        StorageStats {
            blocks: blocks.len(),
            blocks_bytes: blocks.iter().map(|b| b.size_bytes()).sum(),
            head_compactions: self.counters.head_compactions.load(Ordering::Relaxed),
            merge_compactions: self.counters.merge_compactions.load(Ordering::Relaxed),
            compaction_failures: self.counters.compaction_failures.load(Ordering::Relaxed),
            retention_deleted_blocks: self
                .counters
                .retention_deleted_blocks
                .load(Ordering::Relaxed),
            writable: self.is_writable(),
            wal_recoveries: self.counters.wal_recoveries.load(Ordering::Relaxed),
            ooo_appended: self.head.ooo_appended(),
            quarantined_blocks: self.counters.quarantined_blocks.load(Ordering::Relaxed),
            blocks_awaiting_checks: self.unchecked.lock().len(),
        }
    }

    /// Durations (seconds) of compaction steps finished since the last call.
    pub fn take_compaction_durations(&self) -> Vec<f64> {
        std::mem::take(&mut *self.counters.durations.lock())
    }

    /// Counts of what the head holds.
    pub fn head_stats(&self) -> HeadStats {
        self.head.stats()
    }

    /// Number of series in the head (cheap).
    pub fn num_series(&self) -> usize {
        self.head.num_series()
    }

    /// Bytes of WAL on disk: segments plus checkpoint.
    pub fn wal_size_bytes(&self) -> u64 {
        fn size(dir: &Path) -> u64 {
            let Ok(entries) = fs::read_dir(dir) else {
                return 0;
            };
            entries
                .flatten()
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => size(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        }
        size(&self.dir.join(WAL_DIR))
    }

    /// Drops head data older than `mint` (whole chunks) and series left
    /// empty. Returns the number of series removed. Data dropped here is gone
    /// unless it was persisted to a block first.
    pub fn truncate_head(&self, mint: i64) -> usize {
        self.head.truncate(mint)
    }

    /// Compacts closed WAL segments into a checkpoint that keeps live series
    /// and samples at or after `mint`. Called after head truncation.
    ///
    /// # Errors
    /// On WAL I/O failure.
    pub fn checkpoint_wal(&self, mint: i64) -> Result<()> {
        let current = self.wal.cut_segment()?;
        if current == 0 {
            return Ok(());
        }
        // Appends logged before the cut have applied once this returns, so
        // the oldest out-of-order sample held covers every one the
        // checkpointed segments hold that no block has yet.
        self.head.wait_for_appenders();
        let keep = wal::KeepSince {
            in_order: mint,
            out_of_order: self.head.ooo_min_held(),
        };
        wal::checkpoint(
            &self.dir.join(WAL_DIR),
            &self.wal,
            current - 1,
            self.head.interner(),
            crate::storage::head::CheckpointView(&self.head),
            keep,
            self.opts.crash_hook,
        )?;
        Ok(())
    }

    /// One round of background maintenance: while the head spans more than
    /// 1.5 block ranges, writes its oldest range as a block, truncates the
    /// head and checkpoints the WAL; then merges blocks, rewrites blocks
    /// with tombstones, and applies retention. Appends and queries go on
    /// meanwhile. Time is the data's own (sample timestamps), so the outcome
    /// depends only on what was stored.
    ///
    /// # Errors
    /// On I/O failure or an unreadable block; what was completed stays, and
    /// the next run retries the rest.
    pub fn compact(&self) -> Result<CompactionReport> {
        let checked = self.check_deferred_blocks();
        let result = {
            let _guard = self.compaction.lock();
            match checked {
                Ok(_) => self.compact_locked(),
                // Nothing unchecked is merged; retention still frees space.
                Err(e) => self.apply_retention().and(Err(e)),
            }
        };
        if result.is_err() {
            self.counters
                .compaction_failures
                .fetch_add(1, Ordering::Relaxed);
        }
        result
    }

    /// Runs the checks [`Options::defer_block_checks`] left out of
    /// [`Db::open`] ([`Block::check`]) on every block still waiting for
    /// them, oldest first, one at a time under the compaction lock. A block
    /// that fails is quarantined: no longer served (queries already running
    /// finish on it), moved to `quarantine/`, logged and counted. A block
    /// that passes may be shipped from then on. [`Db::compact`],
    /// [`Db::clean_tombstones`] and [`Db::snapshot`] call this first, so
    /// nothing unchecked is merged, rewritten or copied. Returns the number
    /// of blocks quarantined; stops early once the store is closed.
    ///
    /// # Errors
    /// When a block cannot be read for a reason of the machine (an I/O
    /// error or a failed map: it stays waiting, and the next call tries
    /// again) or a damaged block cannot be moved into `quarantine/`.
    pub fn check_deferred_blocks(&self) -> Result<usize> {
        let mut quarantined = 0;
        loop {
            let _guard = self.compaction.lock();
            if self.closed.load(Ordering::Acquire) {
                return Ok(quarantined);
            }
            let Some(block) = self.unchecked.lock().first().cloned() else {
                return Ok(quarantined);
            };
            if !self.blocks.read().iter().any(|b| Arc::ptr_eq(b, &block)) {
                // Gone already (retention ran while checks were failing):
                // nothing to check, nothing to move.
                self.unchecked.lock().remove(0);
                continue;
            }
            let started = Instant::now();
            match block.check(self.opts.verify_chunks_on_open) {
                Ok(()) => {
                    tracing::debug!(block = %block.meta().ulid,
                        duration_ms = started.elapsed().as_millis() as u64, "block passed its deferred checks");
                    self.notify_completed(block.meta());
                }
                Err(e) if is_transient(&e) => {
                    tracing::warn!(block = %block.dir().display(), error = %e,
                        "checking a block failed (not damaged: an I/O or resource error); trying again later");
                    return Err(e.into());
                }
                Err(e) => {
                    self.insert_blocks(std::slice::from_ref(&block), Vec::new());
                    let path = block.dir().to_path_buf();
                    drop(block);
                    quarantine(&self.dir, &path, &e)?;
                    self.counters
                        .quarantined_blocks
                        .fetch_add(1, Ordering::Relaxed);
                    quarantined += 1;
                }
            }
            self.unchecked.lock().remove(0);
        }
    }

    /// Retention runs whatever else failed: on a full disk, writing a
    /// block fails, and deleting old blocks is what frees the space.
    fn compact_locked(&self) -> Result<CompactionReport> {
        let mut report = CompactionReport::default();
        let rest = self.compact_and_merge(&mut report);
        report.retention_deleted = self.apply_retention()?;
        rest.map(|()| report)
    }

    fn compact_and_merge(&self, report: &mut CompactionReport) -> Result<()> {
        while self.compact_head_once()? {
            report.head_blocks += 1;
        }
        let ranges = compact::ranges(self.opts.block_range_ms, self.opts.max_block_duration_ms());
        loop {
            // Unshipped blocks are not merged: the bucket gets level-1
            // blocks only, as from Thanos's sidecar (README, "Scaling out").
            let blocks: Vec<Arc<Block>> = self
                .blocks
                .read()
                .iter()
                .filter(|b| self.is_shipped(b))
                .cloned()
                .collect();
            let metas: Vec<&BlockMeta> = blocks.iter().map(|b| b.meta()).collect();
            let Some(group) = compact::plan(&metas, &ranges) else {
                break;
            };
            let parents: Vec<Arc<Block>> = group.iter().map(|&i| blocks[i].clone()).collect();
            let plan = compact::merged_plan(&parents);
            self.replace_blocks("merge", &parents, plan)?;
            report.merges += 1;
        }
        for b in self.blocks_with_tombstones() {
            self.rewrite_block(&b)?;
            report.rewrites += 1;
        }
        Ok(())
    }

    /// Writes the head's oldest block range as a block if the head spans
    /// more than 1.5 block ranges. Returns whether it did.
    fn compact_head_once(&self) -> Result<bool> {
        let range = self.opts.block_range_ms;
        let (Some(min_t), Some(max_t)) = (self.head.min_t(), self.head.max_t()) else {
            return Ok(false);
        };
        if max_t.saturating_sub(min_t) <= range / 2 * 3 {
            return Ok(false);
        }
        let started = Instant::now();
        let mint = min_t.div_euclid(range).saturating_mul(range);
        let maxt = mint.saturating_add(range);
        // Appends before maxt are already refused (they are older than the
        // head's max time minus half a range); the floor makes it explicit
        // and keeps replay from bringing back what the block holds.
        self.head.set_min_valid_floor(maxt);
        // Appends that read the old floor finish before the head is read.
        self.head.wait_for_appenders();
        self.hook("head:floor_raised");
        self.write_head_block(mint, maxt, None)?;
        // Out-of-order samples of the range are in the block now; older
        // ones (below `mint`) and those that came meanwhile stay.
        self.head.drop_persisted_ooo(mint, maxt);
        self.head.truncate(maxt);
        self.hook("head:truncated");
        self.checkpoint_wal(maxt)?;
        self.counters
            .head_compactions
            .fetch_add(1, Ordering::Relaxed);
        self.record_duration(started);
        Ok(true)
    }

    /// Writes the head's data in `[mint, maxt)` as a level-1 block (none
    /// when the range holds nothing) and adds it to the block list, then
    /// wakes the shipper. Returns whether a block was written.
    fn write_head_block(&self, mint: i64, maxt: i64, head_floor: Option<i64>) -> Result<bool> {
        let written = compact::write_block(
            &self.dir,
            "head",
            head_block_plan(mint, maxt, head_floor),
            self.head_series_for_block(mint, maxt.saturating_sub(1))
                .into_iter()
                .map(Ok),
            self.opts.crash_hook,
        )?;
        let Some(meta) = written else {
            return Ok(false);
        };
        let block = self.open_new_block(&meta)?;
        self.insert_blocks(&[], vec![block]);
        self.hook("head:block_added");
        self.notify_completed(&meta);
        Ok(true)
    }

    /// The head's series with data in `[mint, maxt]` as block-writer input.
    fn head_series(&self, mint: i64, maxt: i64) -> Vec<InputSeries> {
        to_input(self.head.select(&[], mint, maxt))
    }

    /// [`Db::head_series`] for head compaction, which alone may call it:
    /// out-of-order samples are marked as read (see
    /// [`Head::select_for_block`]).
    fn head_series_for_block(&self, mint: i64, maxt: i64) -> Vec<InputSeries> {
        to_input(self.head.select_for_block(mint, maxt))
    }

    fn hook(&self, step: &str) {
        if let Some(h) = self.opts.crash_hook {
            h(step);
        }
    }

    fn record_duration(&self, started: Instant) {
        self.counters
            .durations
            .lock()
            .push(started.elapsed().as_secs_f64());
    }

    fn open_new_block(&self, meta: &BlockMeta) -> Result<Arc<Block>> {
        // Just written and fsynced: the index is checked, chunks are not
        // scanned again.
        Ok(Arc::new(Block::open(&self.dir.join(&meta.ulid), false)?))
    }

    /// Swaps `old` for `new` in the block list, keeping it sorted.
    fn insert_blocks(&self, old: &[Arc<Block>], new: Vec<Arc<Block>>) {
        let mut blocks = self.blocks.write();
        blocks.retain(|b| !old.iter().any(|o| Arc::ptr_eq(o, b)));
        blocks.extend(new);
        blocks.sort_by_key(|b| (b.meta().min_time, b.meta().max_time));
    }

    /// Merges `parents` into one block written from `plan`, then deletes
    /// them. A crash after the new block is in place but before all parents
    /// are gone is repaired at open (blocks named as parents are removed).
    /// `kind` names the operation in crash-hook steps: `<kind>-block:<step>`
    /// while writing, then `<kind>:swapped` and `<kind>:first_parent_deleted`.
    fn replace_blocks(&self, kind: &str, parents: &[Arc<Block>], plan: BlockPlan) -> Result<()> {
        let started = Instant::now();
        let written = compact::write_block(
            &self.dir,
            kind,
            plan,
            compact::merged_series(parents),
            self.opts.crash_hook,
        )?;
        let new = match &written {
            Some(meta) => vec![self.open_new_block(meta)?],
            None => Vec::new(),
        };
        self.insert_blocks(parents, new);
        if let Some(meta) = &written {
            self.notify_completed(meta);
        }
        self.hook(&format!("{kind}:swapped"));
        for (i, p) in parents.iter().enumerate() {
            compact::delete_block_dir(p.dir())?;
            if i == 0 {
                self.hook(&format!("{kind}:first_parent_deleted"));
            }
        }
        self.counters
            .merge_compactions
            .fetch_add(1, Ordering::Relaxed);
        self.record_duration(started);
        Ok(())
    }

    fn blocks_with_tombstones(&self) -> Vec<Arc<Block>> {
        self.blocks
            .read()
            .iter()
            .filter(|b| !b.tombstones().is_empty() && self.is_shipped(b))
            .cloned()
            .collect()
    }

    /// Rewrites one block without its deleted data (crash-hook steps
    /// `rewrite-block:<step>`, `rewrite:swapped`,
    /// `rewrite:first_parent_deleted`).
    fn rewrite_block(&self, b: &Arc<Block>) -> Result<()> {
        let m = b.meta();
        let mut plan = compact::merged_plan(std::slice::from_ref(b));
        plan.compaction.level = m.compaction.level;
        self.replace_blocks("rewrite", std::slice::from_ref(b), plan)
    }

    /// Deletes blocks beyond the time and size retention, oldest first.
    /// Crash-hook steps: `retention:dropped` once the blocks are out of the
    /// block list and none is deleted yet, `retention:block_deleted` after
    /// each block directory is gone.
    /// With a shipper, a block not yet shipped is never deleted (it still
    /// counts towards the size limit).
    fn apply_retention(&self) -> Result<usize> {
        let blocks = self.blocks.read().clone();
        let mut doomed: Vec<Arc<Block>> = Vec::new();
        if self.opts.retention_ms > 0 {
            let newest = blocks
                .iter()
                .map(|b| b.meta().max_time)
                .chain(self.head.max_t())
                .max();
            if let Some(newest) = newest {
                doomed.extend(
                    blocks
                        .iter()
                        .filter(|b| {
                            newest.saturating_sub(b.meta().max_time) >= self.opts.retention_ms
                        })
                        .cloned(),
                );
            }
        }
        if self.opts.retention_bytes > 0 {
            let mut total: u64 =
                blocks.iter().map(|b| b.size_bytes()).sum::<u64>() + self.wal_size_bytes();
            for b in &blocks {
                if total <= self.opts.retention_bytes {
                    break;
                }
                total = total.saturating_sub(b.size_bytes());
                if !doomed.iter().any(|d| Arc::ptr_eq(d, b)) {
                    doomed.push(b.clone());
                }
            }
        }
        doomed.retain(|b| self.is_shipped(b));
        if doomed.is_empty() {
            return Ok(0);
        }
        self.insert_blocks(&doomed, Vec::new());
        self.hook("retention:dropped");
        for b in &doomed {
            tracing::info!(block = %b.meta().ulid, min_time = b.meta().min_time,
                max_time = b.meta().max_time, "deleting block beyond retention");
            compact::delete_block_dir(b.dir())?;
            self.hook("retention:block_deleted");
        }
        self.counters
            .retention_deleted_blocks
            .fetch_add(doomed.len() as u64, Ordering::Relaxed);
        Ok(doomed.len())
    }

    /// Deletes the data of series matching `matchers` in `[mint, maxt]`
    /// (inclusive): tombstones in every overlapping block and a durable
    /// tombstones record for the head. Reads stop seeing the data at once;
    /// the next compaction removes it from disk. Returns the number of
    /// (block or head) series entries affected.
    ///
    /// # Errors
    /// On I/O failure writing tombstones or the WAL.
    pub fn delete(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Result<usize> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        let _guard = self.compaction.lock();
        let mut n = 0;
        for b in self.blocks.read().clone() {
            let m = b.meta();
            if m.min_time <= maxt && m.max_time > mint {
                n += b.delete(matchers, mint, maxt)?;
            }
        }
        n += self.head.delete(matchers, mint, maxt, &self.wal)?;
        Ok(n)
    }

    /// Rewrites every block that has tombstones, dropping the deleted data.
    /// Returns the number of blocks rewritten.
    ///
    /// # Errors
    /// On I/O failure or an unreadable block.
    pub fn clean_tombstones(&self) -> Result<usize> {
        self.check_deferred_blocks()?;
        let _guard = self.compaction.lock();
        let with_tombstones = self.blocks_with_tombstones();
        for b in &with_tombstones {
            self.rewrite_block(b)?;
        }
        Ok(with_tombstones.len())
    }

    /// Writes a snapshot into `snapshots/<name>/`: every block hard-linked
    /// (cheap, and safe because block files are never modified in place;
    /// tombstones are copied since they are replaced on delete), plus the
    /// head written as a block unless `skip_head`. Returns the snapshot
    /// directory.
    ///
    /// # Errors
    /// On I/O failure.
    pub fn snapshot(&self, name: &str, skip_head: bool) -> Result<PathBuf> {
        self.check_deferred_blocks()?;
        let _guard = self.compaction.lock();
        let root = self.dir.join(SNAPSHOTS_DIR);
        let dst = root.join(name);
        compact::create_dir_all_durable(&dst).map_err(io_err("create snapshot directory", &dst))?;
        for b in self.blocks.read().iter() {
            link_block(b.dir(), &dst.join(&b.meta().ulid))?;
        }
        if !skip_head {
            if let (Some(min_t), Some(max_t)) = (self.head.min_t(), self.head.max_t()) {
                let plan = head_block_plan(min_t, max_t.saturating_add(1), None);
                compact::write_block(
                    &dst,
                    "snapshot",
                    plan,
                    self.head_series(min_t, max_t).into_iter().map(Ok),
                    None,
                )?;
            }
        }
        compact::sync_dir(&dst)?;
        compact::sync_dir(&root)?;
        Ok(dst)
    }

    /// Stops taking writes, then (with [`Options::persist_head_on_close`])
    /// writes the head to blocks and checkpoints the WAL empty, flushes and
    /// fsyncs the WAL, then (with [`Options::head_snapshot_on_close`], when
    /// the head was not persisted) writes the head snapshot. Idempotent.
    ///
    /// # Errors
    /// Never for a WAL that failed earlier (a disk still full): everything
    /// acknowledged was durable before its acknowledgement, so that is
    /// logged, not returned, and the head is neither persisted nor
    /// snapshotted (it may hold samples the WAL lacks). A failed persist or
    /// head snapshot is only logged: the WAL still holds everything.
    pub fn close(&self) -> Result<()> {
        let _guard = self.compaction.lock();
        let first = !self.closed.swap(true, Ordering::AcqRel);
        let mut persisted = false;
        if first && self.opts.persist_head_on_close && !self.wal.is_poisoned() {
            let started = Instant::now();
            match self.persist_head_for_close() {
                Ok(blocks) => {
                    persisted = true;
                    tracing::info!(
                        blocks,
                        duration_ms = started.elapsed().as_millis() as u64,
                        "head persisted to blocks at shutdown"
                    );
                }
                Err(e) => {
                    tracing::error!(error = %e, "persisting the head at shutdown failed; the next start replays the WAL");
                }
            }
        }
        if let Err(e) = self.wal.close() {
            if !matches!(e, wal::Error::Poisoned { .. }) {
                return Err(e.into());
            }
            if first {
                tracing::error!(error = %e, "WAL still unwritable at shutdown; writes refused since the failure were never acknowledged");
            }
            return Ok(());
        }
        if first && !persisted && self.opts.head_snapshot_on_close {
            let (_, last) = self.wal.segment_range();
            let path = self.dir.join(HEAD_SNAPSHOT_FILE);
            let started = Instant::now();
            let meta_path = self.dir.join(HEAD_METADATA_FILE);
            // Metadata first: a snapshot is loaded only with its metadata
            // file, so a crash between the two writes costs a WAL replay,
            // never the exemplars.
            let written = metadata_file::write(&self.head, &meta_path, last)
                .map_err(|e| e.to_string())
                .and_then(|()| {
                    head_snapshot::write(&self.head, &path, last).map_err(|e| e.to_string())
                });
            match written {
                Ok(()) => tracing::info!(
                    duration_ms = started.elapsed().as_millis() as u64,
                    "head snapshot written"
                ),
                Err(e) => {
                    tracing::error!(error = %e, "writing head snapshot failed; the next start replays the WAL");
                    let _ = fs::remove_file(&path);
                    let _ = fs::remove_file(&meta_path);
                }
            }
        }
        Ok(())
    }

    /// Writes every sample the head holds to blocks, one per block range it
    /// spans (aligned as head compaction cuts them, so later head blocks of
    /// the same range overlap them exactly and the planner merges them),
    /// then empties the head and checkpoints the WAL at the head's end.
    /// Each block records the floor the head had before
    /// (`tidemark.headFloor`), which the next open restores: a series that
    /// lagged behind the newest sample keeps its place. Returns the number
    /// of blocks written. Appends are already refused (`closed`).
    ///
    /// Crash safety is head compaction's: blocks are renamed into place
    /// whole; until the WAL checkpoint lands, the next open replays the WAL
    /// from that floor, so samples the blocks hold come back into the head
    /// and are merged away as duplicates, never lost.
    fn persist_head_for_close(&self) -> Result<usize> {
        let (Some(min_t), Some(max_t)) = (self.head.min_t(), self.head.max_t()) else {
            return Ok(0);
        };
        let range = self.opts.block_range_ms.max(1);
        let floor_before = self.head.min_valid_floor();
        let end = max_t.saturating_add(1);
        // As head compaction: the floor first, then the wait, so an append
        // that passed the `closed` check but not yet the floor either
        // lands before the head is read or is refused; never below `end`
        // after the read (truncation and the checkpoint would drop it).
        self.head.set_min_valid_floor(end);
        self.head.wait_for_appenders();
        let mut written_blocks = 0;
        let mut mint = min_t.div_euclid(range).saturating_mul(range);
        while mint < end {
            let maxt = mint.saturating_add(range);
            if self.write_head_block(mint, maxt, Some(floor_before))? {
                written_blocks += 1;
            }
            self.head.drop_persisted_ooo(mint, maxt);
            mint = maxt;
        }
        self.hook("close:blocks_written");
        // The head's exemplars and metric metadata outlive it in this file
        // (the checkpoint keeps no exemplar of a series gone from the
        // head), written before the checkpoint drops them from the WAL;
        // see docs/format/head-metadata.md.
        let (_, last) = self.wal.segment_range();
        let meta_path = self.dir.join(HEAD_METADATA_FILE);
        metadata_file::write_persisted(&self.head, &meta_path, last).map_err(|e| Error::Io {
            op: "write head metadata",
            path: meta_path.clone(),
            source: std::io::Error::other(e.to_string()),
        })?;
        self.hook("close:head_metadata_written");
        self.head.truncate(end);
        self.checkpoint_wal(end)?;
        self.hook("close:wal_checkpointed");
        Ok(written_blocks)
    }
}

/// How long [`Db::open`] waits for the data directory's lock before it
/// says the directory is in use.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Takes the advisory lock on `lock` (`<dir>/lock`), waiting up to
/// [`LOCK_WAIT`] for a holder that is about to let go: a process still
/// exiting after it released the directory, or (the lock belongs to the
/// open file, which `fork` shares) a child another thread of this process
/// is spawning, which holds a copy of every descriptor until its `exec`.
fn lock_waiting(lock: &File, lock_path: &Path, dir: &Path) -> Result<()> {
    let deadline = Instant::now() + LOCK_WAIT;
    loop {
        match lock.try_lock() {
            Ok(()) => return Ok(()),
            Err(fs::TryLockError::WouldBlock) if Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            Err(fs::TryLockError::WouldBlock) => {
                return Err(Error::Locked {
                    dir: dir.to_path_buf(),
                })
            }
            Err(fs::TryLockError::Error(source)) => {
                return Err(Error::Io {
                    op: "lock",
                    path: lock_path.to_path_buf(),
                    source,
                })
            }
        }
    }
}

/// Which checks [`load_blocks`] runs.
#[derive(Debug, Clone, Copy)]
enum BlockChecks {
    /// All of them ([`Block::open`]).
    AtOpen { verify_chunks: bool },
    /// Those that cost little ([`Block::open_deferring_checks`]); the rest
    /// are [`Db::check_deferred_blocks`]'s.
    Deferred,
}

/// Removes leftovers, opens every block directory under `dir` (moving the
/// ones that fail into `quarantine/`), drops blocks already merged into
/// another, and returns the rest sorted by time.
fn load_blocks(dir: &Path, check: BlockChecks, report: &mut OpenReport) -> Result<Vec<Arc<Block>>> {
    let entries = fs::read_dir(dir).map_err(io_err("read data directory", dir))?;
    let mut candidates = Vec::new();
    for e in entries {
        let e = e.map_err(io_err("read data directory", dir))?;
        let path = e.path();
        let Some(name) = path
            .file_name()
            .and_then(|n| n.to_str())
            .map(str::to_string)
        else {
            continue;
        };
        if !path.is_dir() {
            continue;
        }
        if name.ends_with(TMP_CREATION_SUFFIX) || name.ends_with(TMP_DELETION_SUFFIX) {
            tracing::warn!(path = %path.display(), "removing leftover of an interrupted block write or deletion");
            fs::remove_dir_all(&path).map_err(io_err("remove leftover block directory", &path))?;
            report.removed_leftovers.push(path);
            continue;
        }
        if is_block_name(&name) {
            candidates.push(path);
        }
    }
    candidates.sort();
    let mut blocks: Vec<Arc<Block>> = Vec::new();
    for path in candidates {
        match open_block_retrying(&path, check) {
            Ok(b) => blocks.push(Arc::new(b)),
            Err(e) if is_transient(&e) => {
                // The machine's trouble, not the block's: never quarantine.
                tracing::error!(block = %path.display(), error = %e,
                    "block cannot be opened (not damaged: an I/O or resource error); refusing to start without it");
                return Err(e.into());
            }
            Err(e) => {
                let to = quarantine(dir, &path, &e)?;
                report.quarantined.push((to, e.to_string()));
            }
        }
    }
    // A merge that crashed after writing its result but before deleting its
    // parents leaves both: the merged block is complete, the parents go.
    let parents: std::collections::HashSet<String> = blocks
        .iter()
        .flat_map(|b| b.meta().compaction.parents.iter().map(|p| p.ulid.clone()))
        .collect();
    let (superseded, kept): (Vec<_>, Vec<_>) = blocks
        .into_iter()
        .partition(|b| parents.contains(&b.meta().ulid));
    for b in superseded {
        tracing::warn!(block = %b.meta().ulid, "removing block already merged into another");
        let path = b.dir().to_path_buf();
        drop(b);
        compact::delete_block_dir(&path)?;
        report.removed_leftovers.push(path);
    }
    let mut blocks = kept;
    blocks.sort_by_key(|b| (b.meta().min_time, b.meta().max_time));
    compact::sync_dir(dir)?;
    Ok(blocks)
}

/// Moves the damaged block directory `path` into `dir`'s `quarantine/`
/// (durably) and logs why; returns where it went.
fn quarantine(dir: &Path, path: &Path, why: &BlockError) -> Result<PathBuf> {
    let q = dir.join(QUARANTINE_DIR);
    compact::create_dir_all_durable(&q).map_err(io_err("create quarantine directory", &q))?;
    let name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    let to = q.join(name);
    tracing::error!(block = %path.display(), quarantined_to = %to.display(), error = %why,
        "block failed its checks; moved to quarantine, its data is not served");
    fs::rename(path, &to).map_err(io_err("quarantine block", path))?;
    compact::sync_dir(&q)?;
    compact::sync_dir(dir)?;
    Ok(to)
}

/// Attempts of [`open_block_retrying`], with the pause before each retry.
const BLOCK_OPEN_RETRIES: [Duration; 3] = [
    Duration::from_millis(100),
    Duration::from_millis(500),
    Duration::from_secs(2),
];

/// Opens a block, retrying an error that [`is_transient`] a few times.
fn open_block_retrying(path: &Path, check: BlockChecks) -> Result<Block, BlockError> {
    let mut pauses = BLOCK_OPEN_RETRIES.iter();
    loop {
        let opened = match check {
            BlockChecks::AtOpen { verify_chunks } => Block::open(path, verify_chunks),
            BlockChecks::Deferred => Block::open_deferring_checks(path),
        };
        match opened {
            Err(e) if is_transient(&e) => match pauses.next() {
                Some(pause) => {
                    tracing::warn!(block = %path.display(), error = %e, retry_in = ?pause,
                        "opening a block failed; retrying");
                    std::thread::sleep(*pause);
                }
                None => return Err(e),
            },
            other => return other,
        }
    }
}

/// Whether a block failed to open because of the machine (too many open
/// files, an I/O error, a failed memory map) rather than its bytes. Such a
/// block is retried and reported, never quarantined: quarantine is for
/// damage (a checksum, a format error, a missing or truncated file).
fn is_transient(e: &BlockError) -> bool {
    match e {
        BlockError::Io { source, .. } => !matches!(
            source.kind(),
            std::io::ErrorKind::NotFound
                | std::io::ErrorKind::InvalidData
                | std::io::ErrorKind::UnexpectedEof
        ),
        _ => false,
    }
}

/// Block directories are named by a 26-character ULID.
fn is_block_name(name: &str) -> bool {
    name.len() == 26 && name.bytes().all(|c| c.is_ascii_alphanumeric())
}

/// Hard-links a block's immutable files into `dst`; copies its tombstones.
fn link_block(src: &Path, dst: &Path) -> Result<()> {
    compact::create_dir_all_durable(&dst.join(CHUNKS_DIR))
        .map_err(io_err("create snapshot block", dst))?;
    for rel in walk_files(src)? {
        let from = src.join(&rel);
        let to = dst.join(&rel);
        if rel == Path::new(crate::storage::block::TOMBSTONES_FILE) {
            fs::copy(&from, &to)
                .and_then(|_| fs::File::open(&to)?.sync_all())
                .map_err(io_err("copy tombstones", &from))?;
        } else {
            fs::hard_link(&from, &to).map_err(io_err("hard-link block file", &from))?;
        }
    }
    compact::sync_dir(&dst.join(CHUNKS_DIR))?;
    compact::sync_dir(dst)
}

/// Relative paths of the files of a block directory (one level of
/// subdirectories: `chunks/`).
fn walk_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).map_err(io_err("read block directory", dir))? {
        let e = e.map_err(io_err("read block directory", dir))?;
        let name = PathBuf::from(e.file_name());
        if e.path().is_dir() {
            for f in fs::read_dir(e.path()).map_err(io_err("read block directory", dir))? {
                let f = f.map_err(io_err("read block directory", dir))?;
                out.push(name.join(f.file_name()));
            }
        } else {
            out.push(name);
        }
    }
    Ok(out)
}

impl Drop for Db {
    fn drop(&mut self) {
        if let Err(e) = self.close() {
            tracing::error!(error = %e, "closing storage");
        }
    }
}

/// The plan of a level-1 block written from the head over `[mint, maxt)`.
fn head_block_plan(mint: i64, maxt: i64, head_floor: Option<i64>) -> BlockPlan {
    BlockPlan {
        min_time: mint,
        max_time: maxt,
        compaction: BlockCompaction {
            level: 1,
            sources: Vec::new(),
            parents: Vec::new(),
        },
        head_floor,
    }
}

/// Head series as block-writer input.
fn to_input(selected: Vec<crate::storage::head::HeadSelected>) -> Vec<InputSeries> {
    selected
        .into_iter()
        .map(|(labels, chunks, deleted)| {
            let chunks = chunks.into_iter().map(InputChunk::Head).collect();
            (labels, vec![InputPart { chunks, deleted }])
        })
        .collect()
}
