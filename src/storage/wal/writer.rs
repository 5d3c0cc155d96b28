//! The WAL writer: frames batches of record payloads into the current
//! segment with one `write(2)`, rotates segments, and makes writes durable by
//! group commit (`docs/format/wal.md`, section "Writing and durability").
//!
//! Owns the open segment and the durability state. Must not read or repair
//! segments (that is replay's job, done before [`Wal::open`]) and must not
//! delete them (that is [`super::checkpoint()`]'s job).
//!
//! A failed write or fsync makes the WAL refuse writes (`Poisoned`) until
//! [`Wal::recover`] succeeds: it cuts the failed segment back to its last
//! durable length, starts a new segment and writes again every frame not
//! known durable, so no retried fsync is ever trusted (fsyncgate) and
//! nothing half written is replayed.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};

use super::reader::{newest_checkpoint, CHECKPOINT_PREFIX};
use super::record::chained_fits;
use super::segment::{create_segment, list_segments, put_frame, sync_dir};
use super::{
    encode_linked, encode_samples, io_err, next_segment_tag, Error, RefSample, Result,
    SeriesSamples, DEFAULT_SEGMENT_SIZE, MAX_RECORD_LEN, SEGMENT_HEADER_LEN,
};

/// When [`Wal::wait_durable`] considers data durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// Group commit: a waiter returns once an fsync covering its write has
    /// completed; concurrent waiters share one fsync.
    Batch,
    /// A background thread fsyncs every interval; waiters return at once
    /// (a crash of the machine may lose up to one interval).
    Interval(Duration),
    /// Never fsync except on segment rotation and close; for tests and
    /// throwaway data.
    Never,
}

/// Options of the WAL writer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WalOptions {
    /// A new segment is started when the next write would pass this size; a
    /// write larger than it gets a segment of its own. Default 128 MiB.
    pub segment_size: u64,
    /// Durability policy. Default [`FsyncPolicy::Batch`].
    pub fsync: FsyncPolicy,
    /// Write records of 256 bytes and more snappy-compressed (record type
    /// 12) when that makes them shorter, as Prometheus's
    /// `--storage.tsdb.wal-compression`, and float samples given as
    /// [`Payload::Samples`] as run-chained samples records (type 14: each
    /// against its series' previous sample in the segment). Default on.
    /// Either setting reads every kind.
    pub compression: bool,
}

impl Default for WalOptions {
    fn default() -> Self {
        Self {
            segment_size: DEFAULT_SEGMENT_SIZE,
            fsync: FsyncPolicy::Batch,
            compression: true,
        }
    }
}

/// One record of a [`Wal::log_payloads`] batch.
#[derive(Debug)]
pub enum Payload<'a, 'b> {
    /// A record payload as it is to be written (type byte first).
    Record(&'a [u8]),
    /// In-order float samples of series, each with the series' chain link
    /// (kept by the caller, e.g. in the head's series): written as a
    /// chained samples record (with compression on) or a samples record.
    Samples(&'a mut [SeriesSamples<'b>]),
}

/// What the writer keeps of a batch until it is durable, to write it
/// again after a failure: samples are written again as a samples record
/// (type 2), since the chain they were encoded against is in the segment
/// being cut.
#[derive(Debug)]
enum Kept {
    Framed(Vec<u8>),
    /// A chained samples record still to encode (index into the batch's
    /// payloads), and a copy of its samples for recovery.
    Samples(usize, Vec<RefSample>),
}

/// Position of a write in the log (total frame bytes written through it);
/// pass it to [`Wal::wait_durable`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ticket(u64);

/// A write not yet known to be durable: [`Durable::wait`] returns once it
/// is (per the policy, as [`Wal::wait_durable`]). Nothing may be
/// acknowledged before that.
#[must_use = "a write is acknowledged only after Durable::wait"]
pub struct Durable {
    shared: Arc<Shared>,
    ticket: Option<Ticket>,
}

impl Durable {
    /// Blocks until the write is durable (group commit, as
    /// [`Wal::wait_durable`]).
    ///
    /// # Errors
    /// [`Error::Poisoned`] if a write or fsync has failed.
    pub fn wait(&self) -> Result<()> {
        match self.ticket {
            Some(t) => self.shared.wait_durable(t),
            None => Ok(()),
        }
    }

    /// Whether [`Durable::wait`] would return at once (fsync policy other
    /// than batch, or an fsync already covered the write). It may still
    /// return an error then.
    pub fn is_ready(&self) -> bool {
        self.ticket.is_none_or(|t| self.shared.is_durable(t))
    }
}

impl std::fmt::Debug for Durable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Durable")
            .field("ticket", &self.ticket)
            .finish()
    }
}

/// The write-ahead log writer. `Send + Sync`; share it as `Arc<Wal>`.
///
/// Locking: `Shared::writer` guards the open segment and the byte counter;
/// `Shared::commit` guards the durable mark and the "a leader is syncing"
/// flag. Lock order: `writer` before `commit` before `poisoned`; no fsync
/// runs under `writer` except on rotation, recovery and close. `dir`, `opts`
/// are immutable; `poisoned` is set by the first failure and cleared only by
/// a successful [`Wal::recover`].
pub struct Wal {
    shared: Arc<Shared>,
    background: Mutex<Option<JoinHandle<()>>>,
}

struct Shared {
    dir: PathBuf,
    opts: WalOptions,
    writer: Mutex<WriterState>,
    commit: Mutex<CommitState>,
    committed: Condvar,
    poisoned: Mutex<Option<Poison>>,
    /// Fast path of `poisoned.is_some()`.
    is_poisoned: AtomicBool,
    /// Bumped by every failure and recovery: an fsync that started before
    /// one of them proves nothing about the data and must not raise the
    /// durable mark.
    generation: AtomicU64,
    fsyncs: AtomicU64,
    /// Fault injection for unit tests: the next data fsync fails with EIO.
    #[cfg(test)]
    fail_next_fsync: AtomicBool,
    stop: Mutex<bool>,
    stop_cv: Condvar,
}

struct WriterState {
    /// The open segment; an `Arc` so a syncer can fsync it without holding
    /// the lock (cheaper than `try_clone`, which costs a `dup(2)`). `None`
    /// when no segment could be created (the WAL is poisoned then); `index`
    /// is then the one the next segment gets.
    file: Option<Arc<File>>,
    path: PathBuf,
    index: u32,
    /// Bytes in the open segment, header included.
    size: u64,
    /// Bytes of the open segment covered by a successful fsync.
    synced_size: u64,
    /// Batches written since the last successful fsync, with the ticket
    /// each ends at: what recovery writes again. Not kept with
    /// [`FsyncPolicy::Never`], which promises nothing across a crash.
    unsynced: VecDeque<(u64, Vec<Kept>)>,
    /// The open segment's tag for chained samples records
    /// ([`next_segment_tag`]): new whenever a segment starts.
    chain_tag: u32,
    /// Oldest segment on disk.
    first: u32,
    /// Frame bytes written through this writer: the ticket counter.
    written: u64,
    closed: bool,
}

struct CommitState {
    /// Everything up to this ticket is durable.
    durable: u64,
    /// A leader is fsyncing right now.
    syncing: bool,
}

#[derive(Debug)]
struct Poison {
    op: &'static str,
    path: PathBuf,
    source: Arc<io::Error>,
}

impl Wal {
    /// Opens the WAL for writing after replay: creates `dir` if needed and
    /// starts a new segment after the last one (or after the newest
    /// checkpoint, whichever is later).
    ///
    /// # Errors
    /// [`Error::Io`] if the directory or segment cannot be created.
    pub fn open(dir: &Path, opts: WalOptions) -> Result<Wal> {
        crate::storage::compact::create_dir_all_durable(dir)
            .map_err(io_err("create WAL directory", dir))?;
        remove_unfinished_checkpoints(dir)?;
        let segments = list_segments(dir)?;
        let after_segments = segments.last().map(|(i, _)| i + 1);
        let after_checkpoint = newest_checkpoint(dir)?.map(|(i, _)| i + 1);
        let index = after_segments.max(after_checkpoint).unwrap_or(0);
        let first = segments.first().map_or(index, |(i, _)| *i);
        // A segment that cannot be created (a full disk) leaves the WAL
        // poisoned instead of failing the open: the store serves reads, and
        // [`Wal::recover`] starts writing once space is back.
        let created = create_segment(dir, index).and_then(|(file, path)| {
            file.sync_data()
                .map_err(io_err("fsync WAL segment header", &path))?;
            sync_dir(dir)?;
            Ok((file, path))
        });
        let (file, path, size, failure) = match created {
            Ok((file, path)) => (Some(Arc::new(file)), path, SEGMENT_HEADER_LEN, None),
            Err(Error::Io { op, path, source }) => (None, path, 0, Some((op, source))),
            Err(e) => return Err(e),
        };
        let shared = Arc::new(Shared {
            dir: dir.to_path_buf(),
            opts,
            writer: Mutex::new(WriterState {
                file,
                path: path.clone(),
                index,
                size,
                synced_size: size,
                unsynced: VecDeque::new(),
                chain_tag: next_segment_tag(),
                first,
                written: 0,
                closed: false,
            }),
            commit: Mutex::new(CommitState {
                durable: 0,
                syncing: false,
            }),
            committed: Condvar::new(),
            poisoned: Mutex::new(None),
            is_poisoned: AtomicBool::new(false),
            generation: AtomicU64::new(0),
            fsyncs: AtomicU64::new(0),
            #[cfg(test)]
            fail_next_fsync: AtomicBool::new(false),
            stop: Mutex::new(false),
            stop_cv: Condvar::new(),
        });
        if let Some((op, source)) = failure {
            // Created but not usable: recovery creates it anew.
            let _ = std::fs::remove_file(&path);
            let e = shared.poison(op, &path, source);
            tracing::error!(error = %e, "WAL cannot start a segment; writes are refused until it can");
        }
        let background = match opts.fsync {
            FsyncPolicy::Interval(every) => {
                let shared = Arc::clone(&shared);
                let handle = std::thread::Builder::new()
                    .name("wal-fsync".into())
                    .spawn(move || shared.sync_every(every))
                    .map_err(io_err("spawn WAL fsync thread", dir))?;
                Some(handle)
            }
            FsyncPolicy::Batch | FsyncPolicy::Never => None,
        };
        Ok(Wal {
            shared,
            background: Mutex::new(background),
        })
    }

    /// Frames and writes the given record payloads with one `write(2)` call
    /// (the whole batch lands in one segment) and returns a ticket to wait
    /// on. The data is in the OS page cache when this returns, so it
    /// survives `kill -9` (not power loss: see [`Wal::wait_durable`]).
    ///
    /// # Errors
    /// [`Error::EmptyRecord`], [`Error::RecordTooLarge`], [`Error::Closed`];
    /// [`Error::Poisoned`] if this or an earlier write or fsync failed.
    pub fn log(&self, payloads: &[&[u8]]) -> Result<Ticket> {
        let mut payloads: Vec<Payload<'_, '_>> =
            payloads.iter().map(|p| Payload::Record(p)).collect();
        self.log_payloads(&mut payloads)
    }

    /// [`Wal::log`] of records some of which are float samples to be
    /// encoded by the WAL ([`Payload::Samples`]): with compression on they
    /// become a chained samples record, encoded under the writer's lock
    /// against the open segment (so the segment's order is the chain's),
    /// advancing the series' links. Empty samples write nothing.
    ///
    /// # Errors
    /// As [`Wal::log`].
    pub fn log_payloads(&self, payloads: &mut [Payload<'_, '_>]) -> Result<Ticket> {
        let compression = self.shared.opts.compression;
        // Compression, framing and CRCs of other records happen before
        // taking the lock; samples are chained under it.
        let mut parts = Vec::with_capacity(payloads.len());
        let mut compressed = Vec::new();
        for (i, p) in payloads.iter().enumerate() {
            let part = match p {
                Payload::Record(p) => {
                    check_len(p.len())?;
                    let mut framed = Vec::with_capacity(p.len() + 8);
                    if compression && super::compress_record(p, &mut compressed) {
                        put_frame(&mut framed, &compressed);
                    } else {
                        put_frame(&mut framed, p);
                    }
                    Kept::Framed(framed)
                }
                Payload::Samples(series) => {
                    let samples: Vec<RefSample> = series
                        .iter()
                        .flat_map(|s| s.samples.iter().copied())
                        .collect();
                    if samples.is_empty() {
                        continue;
                    }
                    if compression && chained_fits(samples.len(), MAX_RECORD_LEN as usize) {
                        Kept::Samples(i, samples)
                    } else {
                        framed_samples(&samples)?
                    }
                }
            };
            parts.push(part);
        }
        let s = &*self.shared;
        s.check()?;
        let mut w = s.writer.lock();
        if w.closed {
            return Err(Error::Closed);
        }
        if parts.is_empty() {
            return Ok(Ticket(w.written));
        }
        if w.file.is_none() {
            return s.check().and(Err(Error::Closed));
        }
        let mut buf = assemble(&parts, payloads, w.chain_tag);
        if w.size > SEGMENT_HEADER_LEN && w.size + buf.len() as u64 > s.opts.segment_size {
            // The batch goes to a new segment, with a new tag: the links
            // just advanced start their chains again.
            s.rotate(&mut w)?;
            buf = assemble(&parts, payloads, w.chain_tag);
        }
        let total = buf.len() as u64;
        let Some(file) = w.file.clone() else {
            return s.check().and(Err(Error::Closed));
        };
        if let Err(e) = (&*file).write_all(&buf) {
            return Err(s.poison("write WAL segment", &w.path, e));
        }
        w.size += total;
        w.written += total;
        if s.opts.fsync != FsyncPolicy::Never {
            let end = w.written;
            w.unsynced.push_back((end, parts));
        }
        Ok(Ticket(w.written))
    }

    /// Returns once everything up to `ticket` is durable per the policy.
    /// Batch: group commit; concurrent waiters share one fsync (a leader
    /// fsyncs while the others wait; whoever finds its ticket already covered
    /// returns at once). Interval and Never: returns at once.
    ///
    /// # Errors
    /// [`Error::Poisoned`] if a write or fsync has failed.
    pub fn wait_durable(&self, ticket: Ticket) -> Result<()> {
        self.shared.wait_durable(ticket)
    }

    /// A handle that waits for `ticket` ([`Durable::wait`]) and outlives
    /// the borrow of the log: the caller can hand it to another thread
    /// (the HTTP write path waits off the ingest threads). `None`: nothing
    /// to wait for (the handle is ready at once and never fails).
    pub fn durable(&self, ticket: Option<Ticket>) -> Durable {
        Durable {
            shared: Arc::clone(&self.shared),
            ticket,
        }
    }

    /// Starts a new segment now (checkpointing needs closed segments) and
    /// returns its index. The old segment is fsynced first.
    ///
    /// # Errors
    /// [`Error::Closed`]; [`Error::Poisoned`] on write/fsync failure.
    pub fn cut_segment(&self) -> Result<u32> {
        let s = &*self.shared;
        s.check()?;
        let mut w = s.writer.lock();
        if w.closed {
            return Err(Error::Closed);
        }
        s.rotate(&mut w)?;
        Ok(w.index)
    }

    /// The ticket of everything written so far: waiting on it waits until
    /// every acknowledged-or-pending write before this call is durable.
    pub fn written(&self) -> Ticket {
        Ticket(self.shared.writer.lock().written)
    }

    /// Whether writes are refused after a failed write or fsync (until
    /// [`Wal::recover`] succeeds).
    pub fn is_poisoned(&self) -> bool {
        self.shared.is_poisoned.load(Ordering::Acquire)
    }

    /// Makes the WAL writable again after a failure, if it can: cuts the
    /// failed segment back to what its last good fsync covered, starts the
    /// next segment, writes again every frame written since that fsync, and
    /// fsyncs it all. Returns `Ok(false)` when there was nothing to recover.
    /// On error the WAL stays poisoned and this can be called again later
    /// (e.g. once disk space is back).
    ///
    /// # Errors
    /// [`Error::Io`] for the step that failed; [`Error::Closed`].
    pub fn recover(&self) -> Result<bool> {
        let s = &*self.shared;
        let mut w = s.writer.lock();
        if w.closed {
            return Err(Error::Closed);
        }
        if !s.is_poisoned.load(Ordering::Acquire) {
            return Ok(false);
        }
        let index = if w.file.is_some() {
            // Frames past the last good fsync are not trusted, whatever a
            // later fsync would say; their copies are in `unsynced`.
            let path = w.path.clone();
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .map_err(io_err("open failed WAL segment", &path))?;
            f.set_len(w.synced_size)
                .map_err(io_err("cut failed WAL segment", &path))?;
            f.sync_all()
                .map_err(io_err("fsync cut WAL segment", &path))?;
            w.index + 1
        } else {
            w.index
        };
        // A segment a failed rotation left half made holds no records.
        let next = self.shared.dir.join(super::segment::segment_name(index));
        match std::fs::remove_file(&next) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err("remove unused WAL segment", &next)(e)),
        }
        let (file, path) = create_segment(&s.dir, index)?;
        let mut size = SEGMENT_HEADER_LEN;
        // The kept batches are written again into a new segment with a new
        // tag; their samples as samples records (type 2): the links they
        // advanced refer to the segment being cut, and start again.
        w.chain_tag = next_segment_tag();
        let rewritten: Vec<Vec<u8>> = w
            .unsynced
            .iter()
            .map(|(_, parts)| {
                let mut buf = Vec::new();
                for p in parts {
                    match p {
                        Kept::Framed(f) => buf.extend_from_slice(f),
                        Kept::Samples(_, samples) => {
                            let mut plain = Vec::with_capacity(samples.len() * 12 + 16);
                            encode_samples(samples, &mut plain);
                            put_frame(&mut buf, &plain);
                        }
                    }
                }
                buf
            })
            .collect();
        let rewrite = (|| {
            for buf in &rewritten {
                (&file).write_all(buf)?;
                size += buf.len() as u64;
            }
            file.sync_data()?;
            File::open(&s.dir).and_then(|d| d.sync_all())
        })();
        if let Err(e) = rewrite {
            drop(file);
            let _ = std::fs::remove_file(&path);
            return Err(io_err("write recovered WAL segment", &path)(e));
        }
        s.fsyncs.fetch_add(1, Ordering::Relaxed);
        w.file = Some(Arc::new(file));
        w.path = path;
        w.index = index;
        w.size = size;
        w.synced_size = size;
        w.unsynced.clear();
        let target = w.written;
        s.generation.fetch_add(1, Ordering::AcqRel);
        {
            let mut c = s.commit.lock();
            c.durable = c.durable.max(target);
            *s.poisoned.lock() = None;
            s.is_poisoned.store(false, Ordering::Release);
        }
        s.committed.notify_all();
        tracing::info!(segment = index, "WAL writable again");
        Ok(true)
    }

    /// Makes the next data fsync fail with EIO (unit tests only).
    #[cfg(test)]
    pub(crate) fn fail_next_fsync(&self) {
        self.shared.fail_next_fsync.store(true, Ordering::Release);
    }

    /// First and last segment index currently on disk (the last is the one
    /// being written).
    pub fn segment_range(&self) -> (u32, u32) {
        let w = self.shared.writer.lock();
        (w.first, w.index)
    }

    /// The WAL directory.
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// The options the WAL was opened with.
    pub fn options(&self) -> WalOptions {
        self.shared.opts
    }

    /// Number of data fsyncs issued so far (group commit, background,
    /// rotation, close); for tests and self-metrics.
    pub fn fsync_count(&self) -> u64 {
        self.shared.fsyncs.load(Ordering::Relaxed)
    }

    /// Records that segments below `first` were removed by a checkpoint.
    pub(crate) fn set_first_segment(&self, first: u32) {
        let mut w = self.shared.writer.lock();
        w.first = first.min(w.index);
    }

    /// Flushes, fsyncs and stops the background thread. Idempotent; also
    /// done (best effort) on drop.
    ///
    /// # Errors
    /// [`Error::Poisoned`] if a write or fsync failed (now or earlier).
    pub fn close(&self) -> Result<()> {
        let s = &*self.shared;
        if self.is_poisoned() {
            // One last chance to make the frames since the failure durable.
            if let Err(e) = self.recover() {
                tracing::warn!(error = %e, "WAL recovery at close failed");
            }
        }
        {
            let mut w = s.writer.lock();
            if w.closed {
                return s.check();
            }
            w.closed = true;
        }
        *s.stop.lock() = true;
        s.stop_cv.notify_all();
        if let Some(handle) = self.background.lock().take() {
            // The thread only loops and fsyncs; a panic there left nothing
            // half done that close could fix, and the final fsync follows.
            let _ = handle.join();
        }
        s.check()?;
        s.sync_now()
    }
}

impl Drop for Wal {
    fn drop(&mut self) {
        if let Err(e) = self.close() {
            tracing::error!(error = %e, dir = %self.shared.dir.display(), "closing WAL on drop failed");
        }
    }
}

impl Shared {
    /// The sticky error, if any.
    /// [`Wal::wait_durable`].
    fn wait_durable(&self, ticket: Ticket) -> Result<()> {
        self.check()?;
        if self.opts.fsync != FsyncPolicy::Batch {
            return Ok(());
        }
        let mut c = self.commit.lock();
        loop {
            self.check()?;
            if c.durable >= ticket.0 {
                return Ok(());
            }
            if c.syncing {
                self.committed.wait(&mut c);
                continue;
            }
            c.syncing = true;
            drop(c);
            let result = self.sync_now();
            c = self.commit.lock();
            c.syncing = false;
            self.committed.notify_all();
            result?;
        }
    }

    /// Whether [`Shared::wait_durable`] would return at once: nothing to
    /// wait for under the policy, or the ticket already covered.
    fn is_durable(&self, ticket: Ticket) -> bool {
        self.opts.fsync != FsyncPolicy::Batch || self.commit.lock().durable >= ticket.0
    }

    fn check(&self) -> Result<()> {
        if !self.is_poisoned.load(Ordering::Acquire) {
            return Ok(());
        }
        match &*self.poisoned.lock() {
            None => Ok(()),
            Some(p) => Err(Error::Poisoned {
                op: p.op,
                path: p.path.clone(),
                source: Arc::clone(&p.source),
            }),
        }
    }

    /// Makes the WAL refuse writes (the first failure is kept until
    /// recovery) and returns the error.
    fn poison(&self, op: &'static str, path: &Path, e: io::Error) -> Error {
        {
            let mut p = self.poisoned.lock();
            if p.is_none() {
                *p = Some(Poison {
                    op,
                    path: path.to_path_buf(),
                    source: Arc::new(e),
                });
            }
            self.is_poisoned.store(true, Ordering::Release);
            self.generation.fetch_add(1, Ordering::AcqRel);
        }
        // Wake waiters so they see the error instead of sleeping forever.
        self.committed.notify_all();
        match self.check() {
            Err(e) => e,
            Ok(()) => Error::Closed,
        }
    }

    /// fsyncs the open segment without holding the writer lock and raises
    /// the durable mark to what was written before the fsync started,
    /// unless a failure or recovery happened meanwhile.
    fn sync_now(&self) -> Result<()> {
        let (file, path, target, size, generation) = {
            let w = self.writer.lock();
            let Some(file) = w.file.clone() else {
                return self.check();
            };
            (
                file,
                w.path.clone(),
                w.written,
                w.size,
                self.generation.load(Ordering::Acquire),
            )
        };
        // Earlier segments were fsynced when they were rotated out, so
        // syncing the open one covers everything up to `target`.
        #[cfg(test)]
        if self.fail_next_fsync.swap(false, Ordering::AcqRel) {
            return Err(self.poison("fsync WAL segment", &path, io::Error::from_raw_os_error(5)));
        }
        if let Err(e) = file.sync_data() {
            return Err(self.poison("fsync WAL segment", &path, e));
        }
        self.fsyncs.fetch_add(1, Ordering::Relaxed);
        let mut w = self.writer.lock();
        if self.generation.load(Ordering::Acquire) != generation {
            return self.check();
        }
        if w.file.as_ref().is_some_and(|f| Arc::ptr_eq(f, &file)) {
            w.synced_size = w.synced_size.max(size);
        }
        while w.unsynced.front().is_some_and(|(end, _)| *end <= target) {
            w.unsynced.pop_front();
        }
        self.mark_durable(target);
        Ok(())
    }

    fn mark_durable(&self, target: u64) {
        let mut c = self.commit.lock();
        c.durable = c.durable.max(target);
    }

    /// Closes the open segment (fsynced, so no later segment is ever durable
    /// while an earlier one is not) and starts the next.
    fn rotate(&self, w: &mut WriterState) -> Result<()> {
        let Some(old) = w.file.clone() else {
            return self.check().and(Err(Error::Closed));
        };
        if let Err(e) = old.sync_data() {
            return Err(self.poison("fsync WAL segment", &w.path, e));
        }
        self.fsyncs.fetch_add(1, Ordering::Relaxed);
        w.synced_size = w.size;
        w.unsynced.clear();
        self.mark_durable(w.written);
        let index = w.index + 1;
        let (file, path) = match create_segment(&self.dir, index) {
            Ok(f) => f,
            Err(Error::Io { op, path, source }) => return Err(self.poison(op, &path, source)),
            Err(e) => return Err(e),
        };
        if let Err(e) = file.sync_data() {
            return Err(self.poison("fsync WAL segment header", &path, e));
        }
        if let Err(e) = File::open(&self.dir).and_then(|d| d.sync_all()) {
            return Err(self.poison("fsync WAL directory", &self.dir, e));
        }
        w.file = Some(Arc::new(file));
        w.path = path;
        w.index = index;
        w.size = SEGMENT_HEADER_LEN;
        w.synced_size = SEGMENT_HEADER_LEN;
        w.chain_tag = next_segment_tag();
        Ok(())
    }

    /// Body of the Interval policy's background thread.
    fn sync_every(&self, every: Duration) {
        loop {
            {
                let mut stopped = self.stop.lock();
                if !*stopped {
                    let _ = self.stop_cv.wait_for(&mut stopped, every);
                }
                if *stopped {
                    return;
                }
            }
            let was_poisoned = self.is_poisoned.load(Ordering::Acquire);
            if let Err(e) = self.sync_now() {
                if !was_poisoned {
                    tracing::error!(error = %e, dir = %self.dir.display(), "WAL background fsync failed; writes are refused until the WAL recovers");
                }
            }
        }
    }
}

/// Refuses an empty payload or one past [`MAX_RECORD_LEN`].
fn check_len(len: usize) -> Result<()> {
    if len == 0 {
        return Err(Error::EmptyRecord);
    }
    if len > MAX_RECORD_LEN as usize {
        return Err(Error::RecordTooLarge { len });
    }
    Ok(())
}

/// A samples record (type 2) of `samples`, framed.
fn framed_samples(samples: &[RefSample]) -> Result<Kept> {
    let mut plain = Vec::with_capacity(samples.len() * 12 + 16);
    encode_samples(samples, &mut plain);
    check_len(plain.len())?;
    let mut framed = Vec::with_capacity(plain.len() + 8);
    put_frame(&mut framed, &plain);
    Ok(Kept::Framed(framed))
}

/// Frames a batch for the segment tagged `tag`, chaining its samples
/// (advancing the links in `payloads`).
fn assemble(parts: &[Kept], payloads: &mut [Payload<'_, '_>], tag: u32) -> Vec<u8> {
    let mut buf = Vec::with_capacity(
        parts
            .iter()
            .map(|p| match p {
                Kept::Framed(f) => f.len(),
                Kept::Samples(_, s) => s.len() * 3 + 32,
            })
            .sum(),
    );
    let mut record = Vec::new();
    for p in parts {
        match p {
            Kept::Framed(f) => buf.extend_from_slice(f),
            Kept::Samples(i, _) => {
                if let Some(Payload::Samples(series)) = payloads.get_mut(*i) {
                    record.clear();
                    encode_linked(series, tag, &mut record);
                    put_frame(&mut buf, &record);
                }
            }
        }
    }
    buf
}

/// Removes `checkpoint.N.tmp` directories: checkpoints a crash interrupted
/// before their rename. Nothing reads them; the complete checkpoint and
/// segments they would have replaced are all still in place.
fn remove_unfinished_checkpoints(dir: &Path) -> Result<()> {
    let entries = std::fs::read_dir(dir).map_err(io_err("list WAL directory", dir))?;
    for entry in entries {
        let entry = entry.map_err(io_err("list WAL directory", dir))?;
        let name = entry.file_name();
        let unfinished = name
            .to_str()
            .is_some_and(|n| n.starts_with(CHECKPOINT_PREFIX) && n.ends_with(".tmp"));
        if unfinished {
            let path = entry.path();
            tracing::warn!(path = %path.display(), "removing an unfinished WAL checkpoint");
            std::fs::remove_dir_all(&path)
                .map_err(io_err("remove unfinished checkpoint", &path))?;
        }
    }
    Ok(())
}
