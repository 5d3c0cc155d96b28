//! [`Receiver`]: one remote-write request from bytes to storage. Checks the
//! headers, decompresses and decodes the body, prepares the batch, appends
//! it (blocking until durable), and folds storage's per-sample rejections
//! into the request's outcome. Exemplars and metadata go to storage with the
//! samples (same WAL entry); those dropped never fail the request.
//! Knows nothing of HTTP beyond header values.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use crate::ingest::decode::{self, ProtoVersion, Request};
use crate::ingest::error::{Error, Reason};
use crate::ingest::limits::{self, ReadLimits, WriteLimits};
use crate::ingest::metrics::IngestMetrics;
use crate::ingest::series_cache::SeriesCache;
use crate::ingest::validate::{self, Offender, Prepared, Rules, MAX_OFFENDERS};
use crate::ingest::wire;
use crate::storage::{
    wal, AppendExtras, Db, ExemplarStore, MetadataStore, SampleKind, SeriesHandle,
};

/// Limits and rules of the receiver.
#[derive(Debug, Clone)]
pub struct ReceiverOptions {
    /// Largest accepted compressed body (413 past it). Default 32 MiB.
    pub max_body_bytes: usize,
    /// Largest accepted decompressed body (400 past it). Default 64 MiB
    /// (VictoriaMetrics refuses more than 32 MB; a Prometheus request of
    /// 2,000 samples is about 300 KB).
    pub max_decompressed_bytes: usize,
    /// How far in the future a sample may be, in ms. Default 10 minutes,
    /// as Prometheus's receiver.
    pub max_future_ms: i64,
    /// Series whose validated labels are kept for the next request
    /// ([`SeriesCache`]); about 60 bytes each. Default 4 Mi.
    pub series_cache_capacity: usize,
    /// Per-request limits of remote write.
    pub limits: WriteLimits,
    /// Limits of remote read (`/api/v1/read`), which answers from the same
    /// storage the receiver writes to.
    pub read: ReadLimits,
    /// Store a zero sample at a sample's created timestamp (remote write
    /// 2.0 `start_timestamp`, OTLP `start_time_unix_nano`) when it is newer
    /// than the series' newest sample
    /// (`--enable-created-timestamp-zero-ingestion`). Default off.
    pub created_timestamp_zero_ingestion: bool,
    /// How OTLP requests are translated (Prometheus's `otlp` settings).
    pub otlp: crate::ingest::otlp::translate::TranslateOptions,
}

impl Default for ReceiverOptions {
    fn default() -> Self {
        Self {
            max_body_bytes: 32 << 20,
            max_decompressed_bytes: 64 << 20,
            max_future_ms: 10 * 60 * 1000,
            series_cache_capacity: 1 << 22,
            limits: WriteLimits::DEFAULT,
            read: ReadLimits::default(),
            created_timestamp_zero_ingestion: false,
            otlp: Default::default(),
        }
    }
}

/// What happened to a readable request.
#[derive(Debug, Clone, PartialEq)]
pub struct WriteOutcome {
    /// The protocol version spoken.
    pub version: ProtoVersion,
    /// Float samples in the request.
    pub samples_received: usize,
    /// Float samples stored (including identical resends accepted silently).
    pub samples_written: usize,
    /// Native histogram samples in the request.
    pub histograms_received: usize,
    /// Native histogram samples stored (including identical resends).
    pub histograms_written: usize,
    /// Native histogram samples rejected (before or by storage).
    pub histograms_rejected: usize,
    /// Exemplars stored (including identical resends accepted silently).
    pub exemplars_written: usize,
    /// Exemplars dropped, by reason (`labels_too_long`, `out_of_order`,
    /// `unknown_series`).
    pub exemplars_dropped: BTreeMap<&'static str, usize>,
    /// Metadata entries dropped, by reason (`too_long`, `families_limit`,
    /// `bytes_limit`).
    pub metadata_dropped: BTreeMap<&'static str, usize>,
    /// Rejected samples by reason.
    pub rejected: BTreeMap<Reason, usize>,
    /// The first few offending series.
    pub offenders: Vec<Offender>,
}

impl WriteOutcome {
    /// Reports whether every sample was stored. Dropped exemplars and
    /// metadata entries do not count: they never fail the samples beside
    /// them (Prometheus drops them too, counted, and answers success).
    pub fn is_complete(&self) -> bool {
        self.rejected_total() == 0
    }

    /// Total rejected samples (not counting dropped exemplars and
    /// metadata entries).
    pub fn rejected_total(&self) -> usize {
        self.rejected
            .iter()
            .filter(|(r, _)| r.counts_samples())
            .map(|(_, n)| n)
            .sum()
    }

    /// The human-readable answer for a partial write: counts by reason and
    /// the first offenders.
    pub fn message(&self) -> String {
        let mut m = format!(
            "partial write: stored {} of {} samples; rejected {}",
            self.samples_written + self.histograms_written,
            self.samples_received + self.histograms_received,
            self.rejected_total()
        );
        let reasons = |samples: bool| -> Vec<String> {
            self.rejected
                .iter()
                .filter(|(r, _)| r.counts_samples() == samples)
                .map(|(r, n)| format!("{}={n}", r.as_str()))
                .collect()
        };
        let (of_samples, of_entries) = (reasons(true), reasons(false));
        if !of_samples.is_empty() {
            let _ = write!(m, " ({})", of_samples.join(", "));
        }
        if !of_entries.is_empty() {
            let dropped: usize = self.rejected.values().sum::<usize>() - self.rejected_total();
            let _ = write!(
                m,
                "; dropped {dropped} exemplars or metadata entries ({})",
                of_entries.join(", ")
            );
        }
        if !self.offenders.is_empty() {
            m.push_str("; first offenders:");
            for o in &self.offenders {
                let _ = write!(m, "\n  {} {}: {}", o.reason.as_str(), o.series, o.detail);
            }
        }
        m.push('\n');
        m
    }
}

/// The remote-write receiver.
pub struct Receiver {
    db: Arc<Db>,
    opts: ReceiverOptions,
    metrics: Arc<IngestMetrics>,
    series: SeriesCache,
}

impl Receiver {
    /// A receiver writing into `db`, with metrics nobody scrapes.
    pub fn new(db: Arc<Db>, opts: ReceiverOptions) -> Self {
        Self::with_metrics(db, opts, Arc::default())
    }

    /// A receiver writing into `db` and counting into `metrics`.
    pub fn with_metrics(db: Arc<Db>, opts: ReceiverOptions, metrics: Arc<IngestMetrics>) -> Self {
        let interner = db.clone();
        Self {
            series: SeriesCache::with_interner(
                opts.series_cache_capacity,
                Box::new(move |l| interner.intern_labels(l)),
            ),
            db,
            opts,
            metrics,
        }
    }

    /// The receiver's metrics.
    pub fn metrics(&self) -> &IngestMetrics {
        &self.metrics
    }

    /// The options in force.
    pub fn options(&self) -> &ReceiverOptions {
        &self.opts
    }

    /// Metric metadata received so far (storage's store).
    pub fn metadata(&self) -> &MetadataStore {
        self.db.metadata()
    }

    /// Exemplars received so far (storage's store).
    pub fn exemplars(&self) -> &ExemplarStore {
        self.db.exemplars()
    }

    /// Checks the headers: the protocol version the request speaks.
    ///
    /// # Errors
    /// [`Error::UnsupportedContentType`], [`Error::UnsupportedEncoding`].
    pub fn version(
        &self,
        content_type: Option<&str>,
        content_encoding: Option<&str>,
    ) -> Result<ProtoVersion, Error> {
        decode::check_content_encoding(content_encoding)?;
        decode::version_from_content_type(content_type)
    }

    /// Handles one request body of `version`. Blocks until the stored
    /// samples are durable. `now_ms` is the wall clock, for the future limit.
    ///
    /// # Errors
    /// Whole-request errors (unreadable body: nothing stored; storage
    /// trouble: nothing acknowledged). Per-sample problems are in the
    /// outcome instead.
    pub fn write(
        &self,
        version: ProtoVersion,
        body: &[u8],
        now_ms: i64,
    ) -> Result<WriteOutcome, Error> {
        let pending = self.write_pending(version, body, now_ms)?;
        self.finish(pending)
    }

    /// [`Receiver::write`] up to the WAL fsync: decodes, checks, logs and
    /// applies the request, and returns what [`Receiver::finish`] waits on
    /// before the outcome may be acknowledged. The HTTP handler runs this
    /// on its ingest threads and the wait elsewhere.
    ///
    /// # Errors
    /// As [`Receiver::write`].
    pub fn write_pending(
        &self,
        version: ProtoVersion,
        body: &[u8],
        now_ms: i64,
    ) -> Result<PendingWrite, Error> {
        if body.len() > self.opts.max_body_bytes {
            return Err(Error::BodyTooLarge {
                limit: self.opts.max_body_bytes,
            });
        }
        let started = Instant::now();
        let raw = decode::decompress(body, self.opts.max_decompressed_bytes)?;
        let limits = &self.opts.limits;
        let rules = Rules {
            max_t: now_ms.saturating_add(self.opts.max_future_ms),
            limits: *limits,
            created_zero: self.opts.created_timestamp_zero_ingestion,
        };
        // A plain 1.0 request (series of labels and float samples: every
        // data request Prometheus sends) is read in place, counted against
        // the whole-request limits as it is read; anything else, malformed
        // bytes included, is counted by a pre-scan and decoded by prost.
        let plain = match version {
            ProtoVersion::V1 => wire::read_plain_v1_limited(&raw, limits)?
                .map(|p| validate::prepare_plain_v1_cached(&p, rules, &self.series)),
            ProtoVersion::V2 => None,
        };
        let prepared = match plain {
            Some(p) => p,
            None => {
                limits::scan(version, &raw, limits)?;
                match decode::decode(version, Bytes::from(raw))? {
                    Request::V1(r) => validate::prepare_v1_cached(&r, rules, &self.series),
                    Request::V2(r) => validate::prepare_v2_cached(&r, rules, &self.series),
                }
            }
        };
        self.metrics
            .observe_decode(version.as_str(), started.elapsed());
        self.store(version, prepared)
    }

    /// Waits until a [`Receiver::write_pending`] write is durable (blocks
    /// on the WAL's group commit unless [`PendingWrite::is_ready`]), counts
    /// it, and returns the outcome to acknowledge.
    ///
    /// # Errors
    /// [`Error::Storage`] if the WAL failed: nothing may be acknowledged.
    pub fn finish(&self, pending: PendingWrite) -> Result<WriteOutcome, Error> {
        pending
            .durable
            .wait()
            .map_err(crate::storage::Error::from)?;
        let outcome = pending.outcome;
        self.metrics.observe_outcome(&outcome);
        for (reason, n) in &outcome.rejected {
            self.metrics.observe_rejected(*reason, *n);
        }
        for (reason, n) in &outcome.exemplars_dropped {
            self.metrics.observe_exemplars_dropped(reason, *n);
        }
        for (reason, n) in &outcome.metadata_dropped {
            self.metrics.observe_metadata_dropped(reason, *n);
        }
        Ok(outcome)
    }

    fn store(&self, version: ProtoVersion, mut p: Prepared) -> Result<PendingWrite, Error> {
        let hints: Vec<Option<SeriesHandle>> = p
            .slots
            .iter_mut()
            .map(|s| s.as_mut().and_then(|s| s.series.take()))
            .collect();
        let extras = AppendExtras {
            exemplars: std::mem::take(&mut p.exemplars),
            metadata: std::mem::take(&mut p.metadata),
        };
        let (appended, resolved, durable) = self.db.append_pending(&p.batch, &hints, &extras)?;
        self.metrics.observe_created_zeros(appended.created_zeros);
        for (i, series) in resolved {
            if let Some(Some(slot)) = p.slots.get(i) {
                self.series.set_series(slot.key, series);
            }
        }
        let histograms_in_batch: usize = p.batch.iter().map(|s| s.histograms.len()).sum();
        let mut histograms_refused = 0;
        for r in &appended.rejected {
            if r.kind == SampleKind::Histogram {
                histograms_refused += 1;
            }
            let labels = p.batch[r.series].labels.clone();
            p.reject(
                || labels.to_string(),
                Reason::from(&r.error),
                1,
                || r.error.to_string(),
            );
        }
        debug_assert!(p.offenders.len() <= MAX_OFFENDERS);
        let x = &appended.extras;
        let mut exemplars_dropped: BTreeMap<&'static str, usize> = x
            .exemplars_dropped
            .iter()
            .map(|(why, n)| (why.as_str(), *n))
            .collect();
        let mut metadata_dropped: BTreeMap<&'static str, usize> = x
            .metadata_dropped
            .iter()
            .map(|(why, n)| (why.as_str(), *n))
            .collect();
        if let Some(n) = p.rejected.get(&Reason::ExemplarLabelsTooLong) {
            exemplars_dropped.insert("labels_too_long", *n);
        }
        if let Some(n) = p.rejected.get(&Reason::MetadataTooLong) {
            metadata_dropped.insert("too_long", *n);
        }
        let histograms_written = histograms_in_batch.saturating_sub(histograms_refused);
        let outcome = WriteOutcome {
            version,
            samples_received: p.samples_received,
            samples_written: (appended.appended + appended.duplicates)
                .saturating_sub(histograms_written),
            histograms_received: p.histograms_received,
            histograms_written,
            histograms_rejected: p.histograms_rejected + histograms_refused,
            exemplars_written: x.exemplars_appended + x.exemplars_duplicate,
            exemplars_dropped,
            metadata_dropped,
            rejected: p.rejected,
            offenders: p.offenders,
        };
        Ok(PendingWrite { outcome, durable })
    }
}

/// A request logged and applied but not yet known to be durable
/// ([`Receiver::write_pending`]); [`Receiver::finish`] makes it an
/// outcome to acknowledge.
#[derive(Debug)]
#[must_use = "a write is acknowledged only through Receiver::finish"]
pub struct PendingWrite {
    outcome: WriteOutcome,
    durable: wal::Durable,
}

impl PendingWrite {
    /// Whether [`Receiver::finish`] would not block (no fsync to wait
    /// for): the caller can finish it in place.
    pub fn is_ready(&self) -> bool {
        self.durable.is_ready()
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use prost::Message;

    use super::*;
    use crate::ingest::proto::prometheus;
    use crate::storage::Options;

    fn body(t: i64) -> Vec<u8> {
        let req = prometheus::WriteRequest {
            timeseries: vec![prometheus::TimeSeries {
                labels: [("__name__", "up"), ("job", "node")]
                    .iter()
                    .map(|(n, v)| prometheus::Label {
                        name: Bytes::from_static(n.as_bytes()),
                        value: Bytes::from_static(v.as_bytes()),
                    })
                    .collect(),
                samples: vec![prometheus::Sample {
                    value: 1.0,
                    timestamp: t,
                }],
                ..Default::default()
            }],
            ..Default::default()
        };
        snap::raw::Encoder::new()
            .compress_vec(&req.encode_to_vec())
            .expect("compressible")
    }

    /// After the first append the cache answers the head's series, whose
    /// labels it hands on; later requests of the series are stored through
    /// it.
    #[test]
    fn repeated_series_come_from_the_cache_with_the_heads_series() {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = Arc::new(Db::open(dir.path(), Options::default()).expect("open"));
        let r = Receiver::new(db.clone(), ReceiverOptions::default());
        let pairs = || {
            [("__name__", "up"), ("job", "node")]
                .into_iter()
                .map(|(n, v)| (n.as_bytes(), v.as_bytes()))
        };
        let key = r.series.key(pairs());
        for (i, t) in [1000, 2000, 3000].into_iter().enumerate() {
            let out = r.write(ProtoVersion::V1, &body(t), 10_000).expect("write");
            assert_eq!(out.samples_written, 1, "request {i}");
            let (labels, series) = r.series.get(key, pairs()).expect("cached");
            let series = series.expect("the head's series after an append");
            assert_eq!(series.labels(), &labels);
            assert_eq!(labels.to_string(), r#"up{job="node"}"#);
        }
        assert_eq!(db.head_stats().samples, 3);
    }
}
