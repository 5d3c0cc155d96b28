//! The receiver's self-metrics: requests by version and status code,
//! samples received / stored / rejected by reason, exemplars and metadata
//! entries dropped by reason, request and decode latency. Registered into the server's registry at construction.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::ingest::error::Reason;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    version: &'static str,
    code: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabel {
    version: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

/// Reasons an exemplar is dropped: over-long labels (ingest), and
/// storage's [`crate::storage::ExemplarDrop`] names.
const EXEMPLAR_DROP_REASONS: [&str; 3] = ["labels_too_long", "out_of_order", "unknown_series"];
/// Reasons a metadata entry is dropped: over-long text (ingest), and
/// storage's [`crate::storage::MetadataDrop`] names.
const METADATA_DROP_REASONS: [&str; 3] = ["too_long", "families_limit", "bytes_limit"];

fn latency_histogram() -> Histogram {
    // 100 µs .. ~26 s.
    Histogram::new(exponential_buckets(0.0001, 4.0, 10))
}

/// Counters and histograms of the remote-write path.
#[derive(Debug)]
pub struct IngestMetrics {
    requests: Family<RequestLabels, Counter>,
    samples_received: Family<VersionLabel, Counter>,
    samples_stored: Counter,
    samples_rejected: Family<ReasonLabel, Counter>,
    histograms_received: Counter,
    histograms_stored: Counter,
    histograms_rejected: Counter,
    exemplars_stored: Counter,
    exemplars_dropped: Family<ReasonLabel, Counter>,
    metadata_dropped: Family<ReasonLabel, Counter>,
    request_duration: Family<VersionLabel, Histogram>,
    decode_duration: Family<VersionLabel, Histogram>,
    otlp_points: Family<ResultLabel, Counter>,
    otlp_requests: Family<ResultLabel, Counter>,
    created_zeros: Counter,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

impl Default for IngestMetrics {
    fn default() -> Self {
        Self {
            requests: Family::default(),
            samples_received: Family::default(),
            samples_stored: Counter::default(),
            samples_rejected: Family::default(),
            histograms_received: Counter::default(),
            histograms_stored: Counter::default(),
            histograms_rejected: Counter::default(),
            exemplars_stored: Counter::default(),
            exemplars_dropped: Family::default(),
            metadata_dropped: Family::default(),
            request_duration: Family::new_with_constructor(latency_histogram),
            decode_duration: Family::new_with_constructor(latency_histogram),
            otlp_points: Family::default(),
            otlp_requests: Family::default(),
            created_zeros: Counter::default(),
        }
    }
}

impl IngestMetrics {
    /// Creates the metrics and registers them under `tidemark_remote_write_*`.
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        {
            let o = registry.sub_registry_with_prefix("tidemark_otlp");
            o.register(
                "data_points",
                "OTLP data points received, by result (accepted, rejected).",
                m.otlp_points.clone(),
            );
            for result in ["accepted", "rejected"] {
                let _ = m.otlp_points.get_or_create(&ResultLabel { result });
            }
            o.register(
                "requests",
                "OTLP export requests, by result (success; partial: some points refused; refused: a 4xx or 503 answer, nothing stored).",
                m.otlp_requests.clone(),
            );
            for result in ["success", "partial", "refused"] {
                let _ = m.otlp_requests.get_or_create(&ResultLabel { result });
            }
        }
        registry.register(
            "tidemark_created_timestamp_zero_samples",
            "Zero samples stored at created timestamps (--enable-created-timestamp-zero-ingestion), remote write and OTLP.",
            m.created_zeros.clone(),
        );
        let r = registry.sub_registry_with_prefix("tidemark_remote_write");
        r.register(
            "requests",
            "Remote-write requests by protocol version and HTTP status code.",
            m.requests.clone(),
        );
        r.register(
            "samples_received",
            "Float samples received.",
            m.samples_received.clone(),
        );
        r.register(
            "samples_stored",
            "Float samples stored (including identical resends).",
            m.samples_stored.clone(),
        );
        r.register(
            "samples_rejected",
            "Samples rejected, by reason (for exemplar_labels_too_long and metadata_too_long: exemplars and metadata entries dropped).",
            m.samples_rejected.clone(),
        );
        r.register(
            "histograms_received",
            "Native histogram samples received.",
            m.histograms_received.clone(),
        );
        r.register(
            "histograms_stored",
            "Native histogram samples stored (including identical resends).",
            m.histograms_stored.clone(),
        );
        r.register(
            "histograms_rejected",
            "Native histogram samples rejected (any reason; also counted by reason in samples_rejected).",
            m.histograms_rejected.clone(),
        );
        r.register(
            "exemplars_stored",
            "Exemplars stored in the head's exemplar store (including identical resends).",
            m.exemplars_stored.clone(),
        );
        r.register(
            "exemplars_dropped",
            "Exemplars dropped, by reason; the samples beside them are stored.",
            m.exemplars_dropped.clone(),
        );
        r.register(
            "metadata_dropped",
            "Metadata entries dropped, by reason; the samples beside them are stored.",
            m.metadata_dropped.clone(),
        );
        r.register(
            "request_duration_seconds",
            "Time to handle a remote-write request, body read to answer.",
            m.request_duration.clone(),
        );
        r.register(
            "decode_duration_seconds",
            "Time to decompress, decode and validate a request body.",
            m.decode_duration.clone(),
        );
        for reason in EXEMPLAR_DROP_REASONS {
            let _ = m.exemplars_dropped.get_or_create(&ReasonLabel { reason });
        }
        for reason in METADATA_DROP_REASONS {
            let _ = m.metadata_dropped.get_or_create(&ReasonLabel { reason });
        }
        for reason in Reason::ALL {
            // Expose every reason from the start, at 0.
            let _ = m.samples_rejected.get_or_create(&ReasonLabel {
                reason: reason.as_str(),
            });
        }
        m
    }

    /// Records one answered request.
    pub fn observe_request(&self, version: &'static str, code: u16, took: Duration) {
        self.requests
            .get_or_create(&RequestLabels { version, code })
            .inc();
        self.request_duration
            .get_or_create(&VersionLabel { version })
            .observe(took.as_secs_f64());
    }

    pub(crate) fn observe_decode(&self, version: &'static str, took: Duration) {
        self.decode_duration
            .get_or_create(&VersionLabel { version })
            .observe(took.as_secs_f64());
    }

    pub(crate) fn observe_outcome(&self, o: &crate::ingest::WriteOutcome) {
        self.samples_received
            .get_or_create(&VersionLabel {
                version: o.version.as_str(),
            })
            .inc_by(o.samples_received as u64);
        self.samples_stored.inc_by(o.samples_written as u64);
        self.histograms_received
            .inc_by(o.histograms_received as u64);
        self.histograms_stored.inc_by(o.histograms_written as u64);
        self.histograms_rejected
            .inc_by(o.histograms_rejected as u64);
        self.exemplars_stored.inc_by(o.exemplars_written as u64);
    }

    pub(crate) fn observe_exemplars_dropped(&self, reason: &'static str, n: usize) {
        self.exemplars_dropped
            .get_or_create(&ReasonLabel { reason })
            .inc_by(n as u64);
    }

    pub(crate) fn observe_metadata_dropped(&self, reason: &'static str, n: usize) {
        self.metadata_dropped
            .get_or_create(&ReasonLabel { reason })
            .inc_by(n as u64);
    }

    pub(crate) fn observe_rejected(&self, reason: Reason, n: usize) {
        self.samples_rejected
            .get_or_create(&ReasonLabel {
                reason: reason.as_str(),
            })
            .inc_by(n as u64);
    }
}

impl IngestMetrics {
    /// Counts zero samples stored at created timestamps.
    pub(crate) fn observe_created_zeros(&self, n: usize) {
        self.created_zeros.inc_by(n as u64);
    }

    /// Counts an OTLP request refused as a whole.
    pub fn observe_otlp_refused(&self) {
        self.otlp_requests
            .get_or_create(&ResultLabel { result: "refused" })
            .inc();
    }

    /// Counts an OTLP request's data points.
    pub fn observe_otlp(&self, o: &crate::ingest::otlp::OtlpOutcome) {
        let result = if o.rejected > 0 { "partial" } else { "success" };
        self.otlp_requests
            .get_or_create(&ResultLabel { result })
            .inc();
        self.observe_created_zeros(o.created_zeros);
        self.otlp_points
            .get_or_create(&ResultLabel { result: "accepted" })
            .inc_by(o.points as u64);
        self.otlp_points
            .get_or_create(&ResultLabel { result: "rejected" })
            .inc_by(o.rejected as u64);
    }
}
