//! The head's append path: resolve series, validate, write the WAL, apply.
//!
//! Order of a commit (Prometheus `headAppender.Commit`, made per-series
//! exact): resolve or create every series; lock the batch's series in ref
//! order (deadlock-free); check each sample against its series' newest
//! sample; write one WAL entry holding the new series and accepted samples;
//! apply to the chunks; unlock; then wait until the WAL entry is durable.
//! Holding the series locks across the WAL write makes the WAL order of each
//! series equal the order its samples were applied, so replay rebuilds
//! exactly what was acknowledged.
//!
//! Exemplars and metric metadata that came with the batch ride in the same
//! WAL entry (records 4 and 6 after the series and samples records): under
//! the series locks the exemplar store's lock, then the metadata store's,
//! is taken; exemplars are judged against their series' newest exemplar and
//! metadata against the stored entry; what is accepted or changed is logged
//! and applied before those locks are released.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crate::model::{Labels, Sample};
use crate::storage::error::{Result, SampleError};
use crate::storage::head::exemplars::{ExemplarDrop, ExemplarEntry, ExemplarVerdict};
use crate::storage::head::metadata::{MetadataDrop, MetricMetadata};
use crate::storage::head::series::MemSeries;
use crate::storage::head::{metadata_to_record, Head};
use crate::storage::wal::{self, RefExemplar, RefSample, RefSeries, Wal};

/// Exemplars and metric metadata that came with a batch.
#[derive(Debug, Clone, Default)]
pub struct AppendExtras {
    /// Exemplars, each naming its series by labels (a series of the batch,
    /// or any series in the head).
    pub exemplars: Vec<ExemplarEntry>,
    /// Metadata entries; the newest of a family wins.
    pub metadata: Vec<MetricMetadata>,
}

/// What happened to a batch's exemplars and metadata.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExtrasOutcome {
    /// Exemplars stored.
    pub exemplars_appended: usize,
    /// Exemplars identical to their series' newest: accepted silently, as
    /// Prometheus does.
    pub exemplars_duplicate: usize,
    /// Exemplars not stored, by reason.
    pub exemplars_dropped: BTreeMap<ExemplarDrop, usize>,
    /// Metadata entries that changed the store.
    pub metadata_changed: usize,
    /// Metadata entries not stored, by reason.
    pub metadata_dropped: BTreeMap<MetadataDrop, usize>,
}

/// The samples of one series in an append batch, oldest first.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesSamples {
    /// The series' labels (sorted and validated by construction).
    pub labels: Labels,
    /// Samples in ascending time order.
    pub samples: Vec<Sample>,
}

/// A head series an earlier append found or created, given back with a
/// later batch so the append skips looking its labels up
/// ([`crate::storage::Db::append_hinted`]). Stale handles are harmless:
/// one whose series the head has since dropped, or whose labels differ
/// from the batch entry's, is ignored and the labels are looked up.
#[derive(Clone)]
pub struct SeriesHandle(pub(crate) Arc<MemSeries>);

impl std::fmt::Debug for SeriesHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SeriesHandle({})", self.0.labels)
    }
}

/// Series an append resolved by labels (not by a handle), by position in
/// the batch: the handles to pass with the next batch.
pub type ResolvedSeries = Vec<(usize, SeriesHandle)>;

/// One sample that was not stored, by position in the batch.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejected {
    /// Index of the series in the batch.
    pub series: usize,
    /// Index of the sample within that series.
    pub sample: usize,
    /// Why it was refused.
    pub error: SampleError,
}

/// The result of an append: every sample is appended, ignored as an
/// identical duplicate, or rejected with a reason.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AppendOutcome {
    /// Samples stored.
    pub appended: usize,
    /// Samples identical to one already stored (same time, same value bits):
    /// accepted silently so that a sender's retry is idempotent.
    pub duplicates: usize,
    /// Samples refused, in batch order.
    pub rejected: Vec<Rejected>,
    /// The batch's exemplars and metadata.
    pub extras: ExtrasOutcome,
}

impl AppendOutcome {
    /// Reports whether nothing was rejected.
    pub fn is_complete(&self) -> bool {
        self.rejected.is_empty()
    }
}

/// What to do with one sample.
enum Verdict {
    Append,
    Duplicate,
    Reject(SampleError),
}

/// Checks `s` against its series: `last` is the newest sample (stored or
/// accepted earlier in this batch) and `existing(t)` finds the value stored
/// or pending at an older timestamp. A sample identical to one already held,
/// at any timestamp, is a duplicate accepted silently, so that a sender's
/// retry of a batch is idempotent; a different value at a held timestamp is
/// an error, as is anything else not newer than `last`.
fn judge(
    s: Sample,
    last: Option<Sample>,
    min_valid_t: i64,
    existing: impl FnOnce(i64) -> Option<f64>,
) -> Verdict {
    match last {
        Some(l) if s.t <= l.t => {
            let held = if s.t == l.t { Some(l.v) } else { existing(s.t) };
            match held {
                Some(v) if v.to_bits() == s.v.to_bits() => Verdict::Duplicate,
                Some(_) => Verdict::Reject(SampleError::DuplicateSample { t: s.t }),
                None if s.t < min_valid_t => Verdict::Reject(SampleError::TooOld {
                    t: s.t,
                    min_valid_t,
                }),
                None => Verdict::Reject(SampleError::OutOfOrder {
                    t: s.t,
                    last_t: l.t,
                }),
            }
        }
        _ if s.t < min_valid_t => Verdict::Reject(SampleError::TooOld {
            t: s.t,
            min_valid_t,
        }),
        _ => Verdict::Append,
    }
}

impl Head {
    /// Appends a batch: stores every valid sample durably (per the WAL's
    /// fsync policy) and reports the rest. Safe to call from many threads.
    ///
    /// # Errors
    /// When the WAL cannot be written; then nothing of the batch was
    /// acknowledged (samples may be visible in memory, and a retry of the
    /// same batch is accepted as identical duplicates).
    pub(crate) fn append(&self, batch: &[SeriesSamples], wal: &Wal) -> Result<AppendOutcome> {
        self.append_hinted(batch, &[], wal).map(|(o, _)| o)
    }

    /// [`Head::append`] where `hints[i]`, if present, is the series of
    /// `batch[i]` from an earlier append. Returns the outcome and the
    /// series it had to resolve by labels.
    pub(crate) fn append_hinted(
        &self,
        batch: &[SeriesSamples],
        hints: &[Option<SeriesHandle>],
        wal: &Wal,
    ) -> Result<(AppendOutcome, ResolvedSeries)> {
        self.append_with(batch, hints, &AppendExtras::default(), wal)
    }

    /// [`Head::append_hinted`] with the exemplars and metadata that came
    /// with the batch, logged in the same WAL entry.
    pub(crate) fn append_with(
        &self,
        batch: &[SeriesSamples],
        hints: &[Option<SeriesHandle>],
        extras: &AppendExtras,
        wal: &Wal,
    ) -> Result<(AppendOutcome, ResolvedSeries)> {
        let mut outcome = AppendOutcome::default();
        #[cfg(test)]
        tests_pause::before_lock();
        // Held through the append: the head's GC (which drops series and
        // marks them removed) waits, so a hint checked here stays valid;
        // and compaction, which raises the floor and then waits for this
        // lock ([`Head::wait_for_appenders`]) before it reads the head, sees
        // every sample this append lands below the new floor.
        let gc_guard = self.gc_lock.read();
        // Read under the lock, never before it: a floor read earlier could
        // let a lagging append land in a range compaction already persisted
        // and is about to truncate (Prometheus `WaitForAppendersOverlapping`).
        let min_valid_t = self.min_valid_time();

        // 1. Resolve series, outside any series lock.
        let mut targets: Vec<(Arc<MemSeries>, usize)> = Vec::with_capacity(batch.len());
        let mut resolved = ResolvedSeries::new();
        for (i, ss) in batch.iter().enumerate() {
            if ss.samples.is_empty() {
                continue;
            }
            let hinted = hints.get(i).and_then(Option::as_ref).filter(|h| {
                !h.0.removed.load(std::sync::atomic::Ordering::Acquire) && h.0.labels == ss.labels
            });
            if let Some(h) = hinted {
                targets.push((h.0.clone(), i));
                continue;
            }
            // Nothing of it can be stored unless the series already holds
            // it (an identical resend): do not create a series for it, or
            // it would show in label and series lookups with no data
            // (Prometheus checks the bound before creating, too).
            if ss.samples.iter().all(|s| s.t < min_valid_t) {
                match self.series.get(ss.labels.stable_hash(), &ss.labels) {
                    Some(s) => targets.push((s, i)),
                    None => outcome
                        .rejected
                        .extend(ss.samples.iter().enumerate().map(|(j, s)| Rejected {
                            series: i,
                            sample: j,
                            error: SampleError::TooOld {
                                t: s.t,
                                min_valid_t,
                            },
                        })),
                }
                continue;
            }
            match self.get_or_create(&ss.labels) {
                Ok(s) => {
                    resolved.push((i, SeriesHandle(s.clone())));
                    targets.push((s, i));
                }
                Err(e) => outcome
                    .rejected
                    .extend((0..ss.samples.len()).map(|j| Rejected {
                        series: i,
                        sample: j,
                        error: e.clone(),
                    })),
            }
        }
        // Stable: a series listed twice keeps its batch order.
        targets.sort_by_key(|(s, i)| (s.series_ref, *i));

        // 2. Lock each distinct series once, in ref order.
        let mut groups: Vec<(usize, usize)> = Vec::new();
        for (k, (s, _)) in targets.iter().enumerate() {
            match groups.last_mut() {
                Some((start, end)) if targets[*start].0.series_ref == s.series_ref => *end = k + 1,
                _ => groups.push((k, k + 1)),
            }
        }
        let mut guards: Vec<_> = groups
            .iter()
            .map(|&(start, _)| targets[start].0.data.lock())
            .collect();

        // 3. Validate against each series' newest sample.
        let mut new_series: Vec<RefSeries> = Vec::new();
        let mut accepted: Vec<RefSample> = Vec::new();
        let mut accepted_groups: Vec<(usize, usize)> = Vec::with_capacity(groups.len());
        for (g, &(start, end)) in groups.iter().enumerate() {
            let series = &targets[start].0;
            let first = accepted.len();
            let mut last = guards[g].last;
            for (_, i) in &targets[start..end] {
                for (j, &s) in batch[*i].samples.iter().enumerate() {
                    let pending = &accepted[first..];
                    let data = &guards[g];
                    let existing = |t: i64| match pending.binary_search_by_key(&t, |p| p.t) {
                        Ok(k) => Some(pending[k].v),
                        Err(_) => data.value_at(t),
                    };
                    match judge(s, last, min_valid_t, existing) {
                        Verdict::Append => {
                            accepted.push(RefSample {
                                series_ref: series.series_ref,
                                t: s.t,
                                v: s.v,
                            });
                            last = Some(s);
                        }
                        Verdict::Duplicate => outcome.duplicates += 1,
                        Verdict::Reject(error) => outcome.rejected.push(Rejected {
                            series: *i,
                            sample: j,
                            error,
                        }),
                    }
                }
            }
            if accepted.len() > first && !guards[g].logged {
                new_series.push(RefSeries {
                    series_ref: series.series_ref,
                    labels: series.labels.clone(),
                });
            }
            accepted_groups.push((first, accepted.len()));
        }
        outcome.rejected.sort_by_key(|r| (r.series, r.sample));

        // 3b. Judge exemplars and metadata under their stores' locks, held
        // until applied so their WAL order is their apply order.
        let mut ex_store = self.exemplars.lock();
        let mut ex_accepted: Vec<(Arc<MemSeries>, ExemplarEntry)> = Vec::new();
        if self.exemplars.capacity() > 0 && !extras.exemplars.is_empty() {
            let mut pending: HashMap<_, ExemplarEntry, ahash::RandomState> = HashMap::default();
            // Series this append locked, and whether their series record is
            // in the WAL by the end of this append.
            let locked: HashMap<_, bool, ahash::RandomState> = groups
                .iter()
                .enumerate()
                .map(|(g, &(start, _))| {
                    let (first, end) = accepted_groups[g];
                    (targets[start].0.series_ref, guards[g].logged || end > first)
                })
                .collect();
            for e in &extras.exemplars {
                // A series whose record is not logged (created by another
                // append still in flight) would make the exemplar's ref
                // unknown on replay. Another series' lock is only tried, as
                // it is out of this append's ref order.
                let found =
                    self.find_series(&e.series)
                        .filter(|s| match locked.get(&s.series_ref) {
                            Some(logged) => *logged,
                            None => s.data.try_lock().is_some_and(|d| d.logged),
                        });
                let Some(s) = found else {
                    *outcome
                        .extras
                        .exemplars_dropped
                        .entry(ExemplarDrop::UnknownSeries)
                        .or_default() += 1;
                    continue;
                };
                let entry = ExemplarEntry {
                    series: s.labels.clone(),
                    ..e.clone()
                };
                match ex_store.judge(s.series_ref, &entry, &pending) {
                    ExemplarVerdict::Append => {
                        pending.insert(s.series_ref, entry.clone());
                        ex_accepted.push((s, entry));
                    }
                    ExemplarVerdict::Duplicate => outcome.extras.exemplars_duplicate += 1,
                    ExemplarVerdict::Drop(why) => {
                        *outcome.extras.exemplars_dropped.entry(why).or_default() += 1
                    }
                }
            }
        }
        let mut md_store = self.metadata.lock();
        let (md_changed, md_drops) = md_store.stage(self.metadata.limits(), &extras.metadata);
        for why in md_drops {
            *outcome.extras.metadata_dropped.entry(why).or_default() += 1;
        }

        if accepted.is_empty() && ex_accepted.is_empty() && md_changed.is_empty() {
            drop(md_store);
            drop(ex_store);
            drop(guards);
            drop(gc_guard);
            let held = outcome.duplicates > 0
                || outcome.extras.exemplars_duplicate > 0
                || extras.metadata.len() > outcome.extras.metadata_dropped.values().sum::<usize>();
            if held {
                // A duplicate is acknowledged only once the sample (or
                // exemplar, or unchanged metadata) it duplicates is durable. That was logged before
                // it became visible under its lock, so everything the WAL
                // has taken so far covers it.
                wal.wait_durable(wal.written())?;
            }
            return Ok((outcome, resolved));
        }

        // 4. One WAL write for the whole batch, then apply.
        let mut series_rec = Vec::new();
        if !new_series.is_empty() {
            wal::encode_series(&new_series, &mut series_rec);
        }
        let mut samples_rec = Vec::new();
        if !accepted.is_empty() {
            samples_rec.reserve(accepted.len() * 10 + 16);
            wal::encode_samples(&accepted, &mut samples_rec);
        }
        let mut exemplars_rec = Vec::new();
        if !ex_accepted.is_empty() {
            let refs: Vec<RefExemplar> = ex_accepted
                .iter()
                .map(|(s, e)| RefExemplar {
                    series_ref: s.series_ref,
                    t: e.t,
                    v: e.value,
                    labels: e.labels.clone(),
                })
                .collect();
            wal::encode_exemplars(&refs, &mut exemplars_rec);
        }
        let mut metadata_rec = Vec::new();
        if !md_changed.is_empty() {
            let refs: Vec<_> = md_changed.iter().map(metadata_to_record).collect();
            wal::encode_metadata(&refs, &mut metadata_rec);
        }
        let payloads: Vec<&[u8]> = [
            series_rec.as_slice(),
            samples_rec.as_slice(),
            exemplars_rec.as_slice(),
            metadata_rec.as_slice(),
        ]
        .into_iter()
        .filter(|p| !p.is_empty())
        .collect();
        let ticket = wal.log(&payloads)?;
        // An exemplar's series is logged by now: it has samples in this
        // batch, or was logged before (series are created only with
        // samples to store, and marked logged when those are applied).
        outcome.extras.exemplars_appended = ex_accepted.len();
        for (s, e) in ex_accepted {
            ex_store.push(self.exemplars.capacity(), s.series_ref, e);
        }
        drop(ex_store);
        outcome.extras.metadata_changed = md_changed.len();
        md_store.apply(self.metadata.limits(), md_changed);
        drop(md_store);

        let (mut min_t, mut max_t) = (i64::MAX, i64::MIN);
        for (g, &(first, end)) in accepted_groups.iter().enumerate() {
            if first == end {
                continue;
            }
            let d = &mut guards[g];
            for rs in &accepted[first..end] {
                d.append(Sample::new(rs.t, rs.v), self.opts.block_range_ms);
                min_t = min_t.min(rs.t);
                max_t = max_t.max(rs.t);
            }
            d.logged = true;
        }
        drop(guards);
        drop(gc_guard);
        self.observe_time_range(min_t, max_t);
        outcome.appended = accepted.len();

        // 5. Acknowledge only once durable.
        wal.wait_durable(ticket)?;
        Ok((outcome, resolved))
    }
}

/// A pause point at the start of an append, before any lock, for tests that
/// interleave an append with compaction deterministically.
#[cfg(test)]
pub(crate) mod tests_pause {
    use parking_lot::Mutex;

    type Hook = Box<dyn Fn() + Send + Sync>;
    static HOOK: Mutex<Option<Hook>> = Mutex::new(None);

    /// Runs `f` at the start of every append made on a thread named `thread`.
    pub(crate) fn set(thread: &'static str, f: impl Fn() + Send + Sync + 'static) {
        *HOOK.lock() = Some(Box::new(move || {
            if std::thread::current().name() == Some(thread) {
                f();
            }
        }));
    }

    pub(crate) fn clear() {
        *HOOK.lock() = None;
    }

    pub(super) fn before_lock() {
        if let Some(h) = HOOK.lock().as_ref() {
            h();
        }
    }
}
