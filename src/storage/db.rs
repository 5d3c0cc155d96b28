//! [`Db`]: the storage facade. Opens a data directory (locking it against a
//! second process), replays the WAL into the head, then takes appends and
//! serves queriers. The only public entry point of the storage layer.
//!
//! Layout of the data directory:
//! `lock` (advisory lock file), `wal/` (see `docs/format/wal.md`).

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::storage::error::{Error, Result};
use crate::storage::head::{
    AppendOutcome, Head, HeadOptions, HeadReplayStats, HeadStats, SeriesSamples,
};
use crate::storage::wal::{self, ReplayStats, Wal};
use crate::storage::{Options, Querier};

/// What [`Db::open`] found and did.
#[derive(Debug, Clone, Default)]
pub struct OpenReport {
    /// What the WAL reader saw, including any repaired damage.
    pub wal: ReplayStats,
    /// What was applied to the head.
    pub head: HeadReplayStats,
    /// Wall time of the replay.
    pub replay_duration: Duration,
}

/// An open database.
pub struct Db {
    dir: PathBuf,
    head: Arc<Head>,
    wal: Wal,
    closed: AtomicBool,
    report: OpenReport,
    /// Held for the life of the Db: the advisory lock on `<dir>/lock`.
    _lock: File,
}

impl Db {
    /// Opens (creating if needed) the database in `dir` and replays its WAL.
    ///
    /// # Errors
    /// When the directory cannot be created or locked, or the WAL cannot be
    /// read or opened for writing. Damage in the WAL is repaired and logged,
    /// not returned.
    pub fn open(dir: impl AsRef<Path>, opts: Options) -> Result<Db> {
        let dir = dir.as_ref().to_path_buf();
        fs::create_dir_all(&dir).map_err(|source| Error::Io {
            op: "create data directory",
            path: dir.clone(),
            source,
        })?;
        let lock_path = dir.join("lock");
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
        match lock.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => return Err(Error::Locked { dir }),
            Err(fs::TryLockError::Error(source)) => {
                return Err(Error::Io {
                    op: "lock",
                    path: lock_path,
                    source,
                })
            }
        }

        let head = Arc::new(Head::new(HeadOptions {
            block_range_ms: opts.block_range_ms,
            max_series_per_metric: opts.max_series_per_metric,
            stripes: opts.stripes,
        }));
        let wal_dir = dir.join("wal");
        let started = Instant::now();
        let mut head_stats = HeadReplayStats::default();
        let wal_stats = wal::replay(&wal_dir, head.interner(), |rec| {
            head.apply_record(rec, &mut head_stats)
        })?;
        let report = OpenReport {
            wal: wal_stats,
            head: head_stats,
            replay_duration: started.elapsed(),
        };
        let wal = Wal::open(&wal_dir, opts.wal)?;
        Ok(Db {
            dir,
            head,
            wal,
            closed: AtomicBool::new(false),
            report,
            _lock: lock,
        })
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

    /// A read view over `[mint, maxt]` (inclusive, ms).
    pub fn querier(&self, mint: i64, maxt: i64) -> Querier {
        Querier::new(self.head.clone(), mint, maxt)
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
        size(&self.dir.join("wal"))
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
        wal::checkpoint(
            &self.dir.join("wal"),
            &self.wal,
            current - 1,
            self.head.interner(),
            |r| self.head.has_series(r),
            mint,
        )?;
        Ok(())
    }

    /// Stops taking writes, flushes and fsyncs the WAL. Idempotent.
    ///
    /// # Errors
    /// When the final fsync fails.
    pub fn close(&self) -> Result<()> {
        self.closed.store(true, Ordering::Release);
        self.wal.close()?;
        Ok(())
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        if let Err(e) = self.close() {
            tracing::error!(error = %e, "closing storage");
        }
    }
}
