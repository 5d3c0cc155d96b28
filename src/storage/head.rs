//! The head: the most recent data, in memory, compressed in Gorilla chunks.
//!
//! Owns the series map ([`series`]), the postings index ([`postings`]), the
//! exemplar and metric metadata stores ([`exemplars`], [`metadata`]) and
//! the append path ([`appender`]), which writes the WAL before anything
//! becomes visible. Does not own the WAL itself (the [`crate::storage::Db`]
//! does) and never reads configuration.

mod appender;
pub(crate) mod exemplars;
pub(crate) mod metadata;
pub(crate) mod metadata_file;
mod ooo;
mod postings;
mod series;
pub(crate) mod snapshot;
pub use snapshot::check_head_snapshot;

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::model::{Interner, Labels, Matcher};
use crate::storage::error::{Result, SampleError};
use crate::storage::tombstones::{Interval, Intervals, Tombstones};
use crate::storage::wal::{self, Record, RefMetadata, RefTombstone, Wal};
use crate::storage::SeriesRef;

pub use appender::{
    AppendExtras, AppendOutcome, ExtrasOutcome, Rejected, ResolvedSeries, SampleKind, SeriesHandle,
    SeriesSamples,
};
pub use exemplars::{ExemplarDrop, ExemplarEntry, ExemplarStore};
pub use metadata::{
    metric_type_code, metric_type_name, MetadataDrop, MetadataLimits, MetadataStore,
    MetricMetadata, METRIC_TYPES,
};
#[cfg(test)]
pub(crate) use postings::tests::{fleet_labels, fleet_matcher};
pub(crate) use series::HeadChunk;
use series::{GetOrCreate, MemSeries, StripeSeries};

/// Options of the head, taken from [`crate::storage::Options`].
#[derive(Debug, Clone)]
pub(crate) struct HeadOptions {
    pub(crate) block_range_ms: i64,
    pub(crate) max_series_per_metric: usize,
    pub(crate) stripes: usize,
    pub(crate) max_exemplars: usize,
    pub(crate) metadata: MetadataLimits,
    /// How far (ms) behind the head's newest sample a float sample older
    /// than its series' newest is still stored, out of order; 0 refuses
    /// every such sample.
    pub(crate) ooo_window_ms: i64,
}

/// Counts describing the head's contents.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeadStats {
    /// Number of series.
    pub series: usize,
    /// Number of samples held.
    pub samples: usize,
    /// Number of chunks (full and open).
    pub chunks: usize,
    /// Bytes of chunk data.
    pub chunk_bytes: usize,
    /// Oldest sample timestamp, if any.
    pub min_t: Option<i64>,
    /// Newest sample timestamp, if any.
    pub max_t: Option<i64>,
    /// Out-of-order samples stored since the head was opened (replay not
    /// counted).
    pub ooo_appended: u64,
}

/// What WAL replay applied to the head.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeadReplayStats {
    /// Series records applied.
    pub series: u64,
    /// Float samples applied.
    pub samples: u64,
    /// Of [`Self::samples`] and [`Self::histograms`], the out-of-order ones.
    pub ooo_samples: u64,
    /// Histogram samples applied.
    pub histograms: u64,
    /// Histogram samples whose decoded value breaks the structural rules
    /// (damage; not applied).
    pub invalid_histograms: u64,
    /// Samples skipped as not newer than their series (identical resends).
    pub skipped_samples: u64,
    /// Samples whose series ref had no series record.
    pub unknown_refs: u64,
    /// Exemplars stored.
    pub exemplars: u64,
    /// Exemplars not stored: unknown series ref, duplicate or out of order.
    pub skipped_exemplars: u64,
    /// Metadata entries applied.
    pub metadata: u64,
}

/// The in-memory head block.
pub(crate) struct Head {
    opts: HeadOptions,
    series: StripeSeries,
    postings: postings::MemPostings,
    interner: Interner,
    next_ref: AtomicU64,
    min_t: AtomicI64,
    max_t: AtomicI64,
    /// Series count per metric name, for `max_series_per_metric`.
    metric_series: Mutex<HashMap<Arc<str>, usize, ahash::RandomState>>,
    /// Duplicate refs seen during replay mapped to the series that holds
    /// their labels.
    replay_aliases: Mutex<HashMap<SeriesRef, SeriesRef, ahash::RandomState>>,
    /// Read-held by appenders from series resolution to apply; write-held
    /// by [`Head::truncate`] while it removes series.
    gc_lock: parking_lot::RwLock<()>,
    /// Deleted intervals per series ref, applied at read time and when the
    /// head is written to a block.
    tombstones: parking_lot::RwLock<Tombstones<SeriesRef>>,
    /// Nothing older than this is accepted or replayed: the end of the newest
    /// persisted block (samples before it live in blocks).
    min_valid_floor: AtomicI64,
    /// Recent exemplars (own lock, taken after the series locks).
    exemplars: ExemplarStore,
    /// Metric metadata (own lock, taken after the exemplar store's).
    metadata: MetadataStore,
    /// Out-of-order samples stored by appends.
    ooo_appended: AtomicU64,
}

/// A WAL metadata entry as the store holds it (an unknown type code, from
/// a newer build, reads as `unknown`).
fn metadata_from_record(m: RefMetadata) -> MetricMetadata {
    MetricMetadata {
        metric: m.metric,
        metric_type: metric_type_name(m.metric_type).unwrap_or("unknown"),
        help: m.help,
        unit: m.unit,
    }
}

/// A stored metadata entry as the WAL logs it.
fn metadata_to_record(m: &MetricMetadata) -> RefMetadata {
    RefMetadata {
        metric: m.metric.clone(),
        metric_type: metric_type_code(m.metric_type),
        unit: m.unit.clone(),
        help: m.help.clone(),
    }
}

/// One series selected from the head: labels, chunks overlapping the range,
/// and its deleted intervals.
pub(crate) type HeadSelected = (Labels, Vec<HeadChunk>, Option<Intervals>);

/// Refs handed to the new series of one append batch, taken from the
/// head's counter [`RefReservation::BLOCK`] at a time: concurrent batches
/// that create series at once (a scrape's first requests) then give each
/// one runs of consecutive refs instead of interleaving them one by one,
/// which the WAL's run-chained samples records store in a run header each
/// instead of a ref step per sample. Refs left unused when the batch ends
/// are skipped (refs need not be dense).
pub(crate) struct RefReservation {
    next: u64,
    end: u64,
}

impl RefReservation {
    /// Refs taken from the head's counter at once.
    pub(crate) const BLOCK: u64 = 64;

    pub(crate) fn new() -> Self {
        Self { next: 0, end: 0 }
    }

    /// The next ref, reserving a block from `counter` when none is left.
    fn take(&mut self, counter: &AtomicU64) -> SeriesRef {
        if self.next == self.end {
            self.next = counter.fetch_add(Self::BLOCK, Ordering::Relaxed);
            self.end = self.next.saturating_add(Self::BLOCK);
        }
        let r = self.next;
        self.next += 1;
        SeriesRef(r)
    }
}

impl Head {
    pub(crate) fn new(opts: HeadOptions) -> Self {
        let (max_exemplars, metadata_limits) = (opts.max_exemplars, opts.metadata);
        Self {
            series: StripeSeries::new(opts.stripes),
            opts,
            postings: Default::default(),
            interner: Interner::new(),
            next_ref: AtomicU64::new(1),
            min_t: AtomicI64::new(i64::MAX),
            max_t: AtomicI64::new(i64::MIN),
            metric_series: Default::default(),
            replay_aliases: Default::default(),
            gc_lock: Default::default(),
            tombstones: Default::default(),
            min_valid_floor: AtomicI64::new(i64::MIN),
            exemplars: ExemplarStore::new(max_exemplars),
            metadata: MetadataStore::new(metadata_limits),
            ooo_appended: AtomicU64::new(0),
        }
    }

    /// The exemplar store.
    pub(crate) fn exemplars(&self) -> &ExemplarStore {
        &self.exemplars
    }

    /// The metric metadata store.
    pub(crate) fn metadata(&self) -> &MetadataStore {
        &self.metadata
    }

    /// The live series holding `labels`, if any.
    fn find_series(&self, labels: &Labels) -> Option<Arc<MemSeries>> {
        self.series.get(labels.stable_hash(), labels)
    }

    /// The live series of a replayed ref (following replay aliases).
    fn replayed_series(&self, r: SeriesRef) -> Option<Arc<MemSeries>> {
        self.series.get_by_ref(r).or_else(|| {
            let alias = self.replay_aliases.lock().get(&r).copied();
            alias.and_then(|a| self.series.get_by_ref(a))
        })
    }

    /// Refuses (and skips on replay) samples before `t` from now on: they
    /// belong to persisted blocks. Only ever raised.
    pub(crate) fn set_min_valid_floor(&self, t: i64) {
        self.min_valid_floor.fetch_max(t, Ordering::AcqRel);
    }

    /// The floor set by [`Head::set_min_valid_floor`] (`i64::MIN`: none).
    pub(crate) fn min_valid_floor(&self) -> i64 {
        self.min_valid_floor.load(Ordering::Acquire)
    }

    /// Returns once every append that started before this call has
    /// finished applying its samples. Appends read the floor under the
    /// lock this waits for, so after [`Head::set_min_valid_floor`] and this,
    /// no sample below the floor can still arrive.
    pub(crate) fn wait_for_appenders(&self) {
        drop(self.gc_lock.write());
    }

    pub(crate) fn interner(&self) -> &Interner {
        &self.interner
    }

    /// Oldest timestamp the head accepts: its max time minus half a block
    /// range (Prometheus `appendableMinValidTime`).
    pub(crate) fn min_valid_time(&self) -> i64 {
        let floor = self.min_valid_floor.load(Ordering::Acquire);
        let max_t = self.max_t.load(Ordering::Acquire);
        if max_t == i64::MIN {
            return floor;
        }
        max_t
            .saturating_sub(self.opts.block_range_ms / 2)
            .max(floor)
    }

    /// Oldest timestamp an out-of-order float sample may have: the head's
    /// max time minus the out-of-order window (Prometheus's
    /// `headMaxt - oooTimeWindow`); `None` when the window is 0 or the head
    /// is empty.
    pub(crate) fn ooo_min_time(&self) -> Option<i64> {
        let max_t = self.max_t.load(Ordering::Acquire);
        (self.opts.ooo_window_ms > 0 && max_t != i64::MIN)
            .then(|| max_t.saturating_sub(self.opts.ooo_window_ms))
    }

    pub(crate) fn min_t(&self) -> Option<i64> {
        Some(self.min_t.load(Ordering::Acquire)).filter(|&t| t != i64::MAX)
    }

    pub(crate) fn max_t(&self) -> Option<i64> {
        Some(self.max_t.load(Ordering::Acquire)).filter(|&t| t != i64::MIN)
    }

    fn observe_time_range(&self, min_t: i64, max_t: i64) {
        self.min_t.fetch_min(min_t, Ordering::AcqRel);
        self.max_t.fetch_max(max_t, Ordering::AcqRel);
    }

    /// Finds the series for `labels` or creates it (not yet logged to the
    /// WAL), its ref from `refs`, the batch's reservation.
    fn get_or_create(
        &self,
        labels: &Labels,
        refs: &mut RefReservation,
    ) -> Result<Arc<MemSeries>, SampleError> {
        let hash = labels.stable_hash();
        let got = self.series.get_or_create(hash, labels, || {
            self.count_series_of_metric(labels, true)?;
            let r = refs.take(&self.next_ref);
            Ok(Arc::new(MemSeries::new(
                r,
                labels.interned(&self.interner),
                false,
            )))
        })?;
        Ok(match got {
            GetOrCreate::Found(s) => s,
            GetOrCreate::Created(s) => {
                self.postings.add(s.series_ref, &s.labels);
                s
            }
        })
    }

    /// Counts a new series of its metric; refuses past the limit when `enforce`.
    fn count_series_of_metric(&self, labels: &Labels, enforce: bool) -> Result<(), SampleError> {
        let limit = self.opts.max_series_per_metric;
        if limit == 0 {
            return Ok(());
        }
        let name = labels.metric_name().unwrap_or("");
        let mut counts = self.metric_series.lock();
        if let Some(c) = counts.get_mut(name) {
            if enforce && *c >= limit {
                return Err(SampleError::SeriesLimit {
                    metric: name.to_string(),
                    limit,
                });
            }
            *c += 1;
        } else {
            counts.insert(self.interner.intern(name), 1);
        }
        Ok(())
    }

    /// Applies one replayed WAL record. Replay runs before any appender, in
    /// WAL order, so per-series order is the order in which samples were
    /// acknowledged.
    pub(crate) fn apply_record(&self, record: Record, stats: &mut HeadReplayStats) {
        match record {
            Record::Series(series) => {
                for rs in series {
                    stats.series += 1;
                    let hash = rs.labels.stable_hash();
                    let r = rs.series_ref;
                    let got = self.series.get_or_create(hash, &rs.labels, || {
                        let _ = self.count_series_of_metric(&rs.labels, false);
                        Ok::<_, SampleError>(Arc::new(MemSeries::new(r, rs.labels.clone(), true)))
                    });
                    match got {
                        Ok(GetOrCreate::Created(s)) => self.postings.add(s.series_ref, &s.labels),
                        Ok(GetOrCreate::Found(s)) if s.series_ref != r => {
                            self.replay_aliases.lock().insert(r, s.series_ref);
                        }
                        _ => {}
                    }
                    self.next_ref.fetch_max(r.0 + 1, Ordering::Relaxed);
                }
            }
            Record::Samples(samples) => {
                let floor = self.min_valid_floor.load(Ordering::Acquire);
                let (mut min_t, mut max_t) = (i64::MAX, i64::MIN);
                let mut current: Option<Arc<MemSeries>> = None;
                for rs in samples {
                    if current.as_ref().map(|s| s.series_ref) != Some(rs.series_ref) {
                        current = self.series.get_by_ref(rs.series_ref).or_else(|| {
                            let alias = self.replay_aliases.lock().get(&rs.series_ref).copied();
                            alias.and_then(|a| self.series.get_by_ref(a))
                        });
                    }
                    let Some(s) = &current else {
                        stats.unknown_refs += 1;
                        continue;
                    };
                    let mut d = s.data.lock();
                    if rs.t < floor || d.last_t().is_some_and(|l| rs.t <= l) {
                        stats.skipped_samples += 1;
                        continue;
                    }
                    d.append(
                        crate::model::Sample::new(rs.t, rs.v),
                        self.opts.block_range_ms,
                    );
                    d.logged = true;
                    stats.samples += 1;
                    min_t = min_t.min(rs.t);
                    max_t = max_t.max(rs.t);
                }
                if min_t <= max_t {
                    self.observe_time_range(min_t, max_t);
                }
            }
            Record::OooSamples(samples) => self.replay_ooo(
                samples,
                stats,
                |rs| (rs.series_ref, rs.t),
                |d, rs, stats| {
                    let sample = crate::model::Sample::new(rs.t, rs.v);
                    if d.value_at(rs.t).is_some() || !d.append_ooo(sample) {
                        stats.skipped_samples += 1;
                        return false;
                    }
                    stats.samples += 1;
                    true
                },
            ),
            Record::OooHistograms(histograms) => self.replay_ooo(
                histograms,
                stats,
                |rh| (rh.series_ref, rh.t),
                |d, rh, stats| {
                    if rh.h.validate().is_err() {
                        stats.invalid_histograms += 1;
                        return false;
                    }
                    let held = d.value_at(rh.t).is_some()
                        || d.hist().is_some_and(|h| h.value_at(rh.t).is_some());
                    let sample = crate::model::HistogramSample { t: rh.t, h: rh.h };
                    if held || !d.append_ooo_histogram(sample) {
                        stats.skipped_samples += 1;
                        return false;
                    }
                    stats.histograms += 1;
                    true
                },
            ),
            Record::Exemplars(exemplars) => {
                for e in exemplars {
                    let Some(s) = self.replayed_series(e.series_ref) else {
                        stats.skipped_exemplars += 1;
                        continue;
                    };
                    let entry = ExemplarEntry {
                        series: s.labels.clone(),
                        labels: e.labels,
                        value: e.v,
                        t: e.t,
                    };
                    match self.exemplars.add(s.series_ref, entry) {
                        exemplars::ExemplarVerdict::Append => stats.exemplars += 1,
                        _ => stats.skipped_exemplars += 1,
                    }
                }
            }
            Record::Metadata(entries) => {
                let n = entries.len() as u64;
                let dropped = self
                    .metadata
                    .apply(entries.into_iter().map(metadata_from_record).collect());
                stats.metadata += n.saturating_sub(dropped as u64);
            }
            Record::Histograms(histograms) => {
                let floor = self.min_valid_floor.load(Ordering::Acquire);
                let (mut min_t, mut max_t) = (i64::MAX, i64::MIN);
                let mut current: Option<Arc<MemSeries>> = None;
                for rh in histograms {
                    if current.as_ref().map(|s| s.series_ref) != Some(rh.series_ref) {
                        current = self.series.get_by_ref(rh.series_ref).or_else(|| {
                            let alias = self.replay_aliases.lock().get(&rh.series_ref).copied();
                            alias.and_then(|a| self.series.get_by_ref(a))
                        });
                    }
                    let Some(s) = &current else {
                        stats.unknown_refs += 1;
                        continue;
                    };
                    // Logged only after validation; a record that decodes
                    // to an invalid histogram is damage, never applied (the
                    // chunk appenders rely on valid layouts).
                    if rh.h.validate().is_err() {
                        stats.invalid_histograms += 1;
                        continue;
                    }
                    let mut d = s.data.lock();
                    if rh.t < floor || d.last_t().is_some_and(|l| rh.t <= l) {
                        stats.skipped_samples += 1;
                        continue;
                    }
                    d.append_histogram(rh.t, &rh.h, self.opts.block_range_ms);
                    d.logged = true;
                    stats.histograms += 1;
                    min_t = min_t.min(rh.t);
                    max_t = max_t.max(rh.t);
                }
                if min_t <= max_t {
                    self.observe_time_range(min_t, max_t);
                }
            }
            Record::Tombstones(tombstones) => {
                let mut ts = self.tombstones.write();
                for t in tombstones {
                    let r = if self.series.get_by_ref(t.series_ref).is_some() {
                        Some(t.series_ref)
                    } else {
                        self.replay_aliases.lock().get(&t.series_ref).copied()
                    };
                    if let Some(r) = r {
                        ts.add(
                            r,
                            Interval {
                                mint: t.mint,
                                maxt: t.maxt,
                            },
                        );
                    }
                }
            }
        }
    }

    /// Replays one out-of-order record: `insert` stores a sample in its
    /// series' data (under its lock) and says whether it did, counting
    /// what it skips. Never skipped by the floor: the head holds them
    /// until a block has them, and checkpoints keep them till then.
    fn replay_ooo<R>(
        &self,
        records: Vec<R>,
        stats: &mut HeadReplayStats,
        key: impl Fn(&R) -> (SeriesRef, i64),
        mut insert: impl FnMut(&mut series::SeriesData, R, &mut HeadReplayStats) -> bool,
    ) {
        let (mut min_t, mut max_t) = (i64::MAX, i64::MIN);
        for r in records {
            let (series_ref, t) = key(&r);
            let Some(s) = self.replayed_series(series_ref) else {
                stats.unknown_refs += 1;
                continue;
            };
            let mut d = s.data.lock();
            if !insert(&mut d, r, stats) {
                continue;
            }
            d.logged = true;
            stats.ooo_samples += 1;
            min_t = min_t.min(t);
            max_t = max_t.max(t);
        }
        if min_t <= max_t {
            self.observe_time_range(min_t, max_t);
        }
    }

    /// Deletes the data of the series matching `matchers` in `[mint, maxt]`:
    /// logs a tombstones record, waits until it is durable, then hides the
    /// range from reads. Returns the number of series affected.
    pub(crate) fn delete(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
        wal: &Wal,
    ) -> Result<usize> {
        // Clamped to each series' data, as Prometheus's `Head.Delete`: a
        // deletion never hides samples appended after it.
        let records: Vec<RefTombstone> = self
            .matching_series(matchers)
            .into_iter()
            .filter_map(|s| {
                let d = s.data.lock();
                let first = d.first_t()?;
                let last = d.last_t()?;
                (first <= maxt && last >= mint).then(|| RefTombstone {
                    series_ref: s.series_ref,
                    mint: mint.max(first),
                    maxt: maxt.min(last),
                })
            })
            .collect();
        if records.is_empty() {
            return Ok(0);
        }
        let mut payload = Vec::new();
        wal::encode_tombstones(&records, &mut payload);
        let ticket = wal.log(&[&payload])?;
        wal.wait_durable(ticket)?;
        let mut ts = self.tombstones.write();
        for t in &records {
            ts.add(
                t.series_ref,
                Interval {
                    mint: t.mint,
                    maxt: t.maxt,
                },
            );
        }
        Ok(records.len())
    }

    /// The series matching `matchers`, in ref order: the planner's
    /// candidates (`MemPostings::plan`) with the matchers it left over
    /// checked on their labels, after the index lock is released.
    fn matching_series(&self, matchers: &[Matcher]) -> Vec<Arc<MemSeries>> {
        let planned = self.postings.plan(matchers);
        if planned.residual.is_empty() {
            return planned
                .refs
                .iter()
                .filter_map(|&r| self.series.get_by_ref(r))
                .collect();
        }
        planned
            .refs
            .iter()
            .filter_map(|&r| {
                self.series
                    .get_by_ref_if(r, |s| planned.keeps(|n| s.labels.get(n)))
            })
            .collect()
    }

    /// The labels of the series [`Head::select`] would return, unsorted,
    /// without copying chunks; `None` when a matching series has
    /// tombstones (whether any sample is left needs the samples: use
    /// [`Head::select`]).
    pub(crate) fn select_labels(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Option<Vec<Labels>> {
        let tombstones = self.tombstones.read();
        let mut out = Vec::new();
        for s in self.matching_series(matchers) {
            if tombstones.get(s.series_ref).is_some() {
                return None;
            }
            if s.data.lock().overlaps(mint, maxt) {
                out.push(s.labels.clone());
            }
        }
        Some(out)
    }

    /// Series matching `matchers` with their chunks overlapping `[mint, maxt]`,
    /// sorted by labels. Series without such chunks are left out.
    pub(crate) fn select(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Vec<HeadSelected> {
        let tombstones = self.tombstones.read();
        let mut out: Vec<HeadSelected> = self
            .matching_series(matchers)
            .into_iter()
            .filter_map(|s| {
                let chunks = s.data.lock().snapshot(mint, maxt);
                let deleted = tombstones.get(s.series_ref);
                if chunks.is_empty() || deleted.is_some_and(|d| d.covers(mint, maxt)) {
                    return None;
                }
                Some((s.labels.clone(), chunks, deleted.cloned()))
            })
            .collect();
        drop(tombstones);
        out.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Drops full chunks that end before `mint` and series left with no
    /// data, then unused interned strings. Returns the number of series
    /// removed. The caller must have persisted the dropped data elsewhere
    /// (blocks) first.
    pub(crate) fn truncate(&self, mint: i64) -> usize {
        // Excludes appenders, which may hold a series they resolved but have
        // not locked yet; removing it under them would orphan their samples.
        let _gc = self.gc_lock.write();
        let mut removed = Vec::new();
        for s in self.series.all() {
            let mut d = s.data.lock();
            d.full.retain(|c| c.maxt >= mint);
            let open_live = d.open.last_t().is_some_and(|t| t >= mint);
            if !open_live && d.open.num_samples() > 0 {
                // Persisted, and older than everything the head keeps: a
                // series kept alive by its other kind of samples must not
                // hold the head's min time below `mint` (compaction would
                // cut the same range forever). The newest sample stays
                // known (`last`) for the ordering rules.
                d.drop_open();
            }
            let hist_live = d.hist_mut().is_some_and(|h| h.truncate(mint));
            // Out-of-order samples leave only by `drop_persisted_ooo`.
            let ooo_live = d.has_ooo();
            if d.full.is_empty() && !open_live && !hist_live && !ooo_live {
                drop(d);
                self.series.remove(&s);
                s.removed.store(true, Ordering::Release);
                removed.push((s.series_ref, s.labels.clone()));
            }
        }
        self.postings.remove(&removed);
        {
            let mut ts = self.tombstones.write();
            let mut kept = Tombstones::default();
            for (r, ivs) in ts.iter() {
                if self.series.get_by_ref(r).is_none() {
                    continue;
                }
                for iv in ivs.iter().filter(|iv| iv.maxt >= mint) {
                    kept.add(r, *iv);
                }
            }
            *ts = kept;
        }
        if self.opts.max_series_per_metric > 0 {
            let mut counts = self.metric_series.lock();
            for (_, l) in &removed {
                if let Some(c) = counts.get_mut(l.metric_name().unwrap_or("")) {
                    *c = c.saturating_sub(1);
                }
            }
            counts.retain(|_, c| *c > 0);
        }
        let min_t = self
            .series
            .all()
            .iter()
            .filter_map(|s| s.data.lock().first_t())
            .min();
        self.min_t
            .store(min_t.unwrap_or(i64::MAX), Ordering::Release);
        let n = removed.len();
        drop(removed);
        self.interner.purge_unused();
        n
    }

    pub(crate) fn label_names(&self) -> Vec<String> {
        self.postings.label_names()
    }

    pub(crate) fn label_values(&self, name: &str) -> Vec<String> {
        self.postings.label_values(name)
    }

    /// Every series with data in `[mint, maxt]` as [`Head::select`] gives
    /// them, for writing a block: each series' out-of-order samples are
    /// marked as read first, so [`Head::drop_persisted_ooo`] drops only
    /// what the block got.
    pub(crate) fn select_for_block(&self, mint: i64, maxt: i64) -> Vec<HeadSelected> {
        for s in self.series.all() {
            s.data.lock().mark_ooo_persisting();
        }
        self.select(&[], mint, maxt)
    }

    /// Drops the out-of-order samples in `[mint, maxt)` that the last
    /// [`Head::select_for_block`] read (a block holds them now); samples
    /// stored since stay for the next block. Call before [`Head::truncate`],
    /// which keeps series while they hold out-of-order samples.
    pub(crate) fn drop_persisted_ooo(&self, mint: i64, maxt: i64) {
        for s in self.series.all() {
            s.data.lock().drop_persisted_ooo(mint, maxt);
        }
    }

    /// Oldest out-of-order sample the head holds (`i64::MAX` when none):
    /// a WAL checkpoint keeps out-of-order samples from there on.
    pub(crate) fn ooo_min_held(&self) -> i64 {
        self.series
            .all()
            .iter()
            .filter_map(|s| s.data.lock().ooo_first_t())
            .min()
            .unwrap_or(i64::MAX)
    }

    pub(crate) fn stats(&self) -> HeadStats {
        let mut st = HeadStats {
            min_t: self.min_t(),
            max_t: self.max_t(),
            ooo_appended: self.ooo_appended.load(Ordering::Relaxed),
            ..Default::default()
        };
        for s in self.series.all() {
            let d = s.data.lock();
            st.series += 1;
            st.samples += d.num_samples();
            st.chunks += d.num_chunks();
            st.chunk_bytes += d.chunk_bytes();
        }
        st
    }

    /// Out-of-order samples stored by appends since the head was made.
    pub(crate) fn ooo_appended(&self) -> u64 {
        self.ooo_appended.load(Ordering::Relaxed)
    }

    pub(crate) fn num_series(&self) -> usize {
        self.postings.len()
    }

    /// Whether `r` is a live series (for WAL checkpoints).
    pub(crate) fn has_series(&self, r: SeriesRef) -> bool {
        self.series.get_by_ref(r).is_some()
    }
}

/// The head as a WAL checkpoint asks it ([`wal::Held`]): its live series,
/// and the oldest out-of-order sample each still holds.
pub(crate) struct CheckpointView<'a>(pub(crate) &'a Head);

impl wal::Held for CheckpointView<'_> {
    fn live(&self, r: SeriesRef) -> bool {
        self.0.has_series(r)
    }
    fn ooo_from(&self, r: SeriesRef) -> Option<i64> {
        self.0.series.get_by_ref(r)?.data.lock().ooo_first_t()
    }
    fn holds_none(&self) -> bool {
        self.0.num_series() == 0
    }
}

#[cfg(test)]
mod tests;
