//! Errors of the ingest layer. Whole-request errors ([`Error`]) store
//! nothing; per-series and per-sample problems are [`Reason`]s counted in a
//! partial write. The HTTP mapping lives in `api/error.rs`.

use crate::ingest::limits::Limit;

/// A request that was refused as a whole: nothing of it was stored.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `Content-Type` is not a remote-write protobuf this server speaks.
    #[error("unsupported Content-Type {content_type:?}: expected application/x-protobuf (proto=prometheus.WriteRequest or proto=io.prometheus.write.v2.Request)")]
    UnsupportedContentType {
        /// The header as received.
        content_type: String,
    },
    /// `Content-Encoding` is present and not `snappy`.
    #[error("unsupported Content-Encoding {encoding:?}: only snappy is supported")]
    UnsupportedEncoding {
        /// The header as received.
        encoding: String,
    },
    /// The compressed body exceeds the configured limit.
    #[error(
        "request body is larger than the limit of {limit} bytes (set by --max-write-body-bytes)"
    )]
    BodyTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// The body's declared decompressed size exceeds the limit.
    #[error("decompressed body of {size} bytes exceeds the limit of {limit} bytes (set by --max-write-decompressed-bytes)")]
    DecompressedTooLarge {
        /// Declared decompressed size.
        size: usize,
        /// The limit in bytes.
        limit: usize,
    },
    /// The body is not a snappy block.
    #[error("body is not valid snappy (block format): {reason}")]
    Snappy {
        /// The decoder's explanation.
        reason: String,
    },
    /// The decompressed body is not the announced protobuf message.
    #[error("body is not a valid {message} protobuf: {reason}")]
    Protobuf {
        /// The message type expected.
        message: &'static str,
        /// The decoder's explanation.
        reason: String,
    },
    /// A whole-request limit ([`Limit`]) is exceeded: the request can never
    /// be accepted as it is, and nothing of it was stored.
    #[error("request has more than {max} {}; the limit is set by {}", limit.what(), limit.flag())]
    TooMany {
        /// The limit exceeded.
        limit: Limit,
        /// Its value.
        max: usize,
    },
    /// Storage could not take the write (WAL failure, disk full, shutting
    /// down). Retryable; nothing of the request was acknowledged.
    #[error("storage unavailable: {0}")]
    Storage(#[from] crate::storage::Error),
}

/// Why one series or sample of a readable request was not stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Reason {
    /// No `__name__` label, or an empty one.
    MissingMetricName,
    /// An empty label name (or one failing the name rules).
    InvalidLabelName,
    /// A label name or value that is not valid UTF-8.
    InvalidUtf8,
    /// The same label name twice in one series.
    DuplicateLabelName,
    /// A 2.0 symbol reference outside the symbol table, or an odd-length
    /// `labels_refs`.
    InvalidSymbolRef,
    /// Older than the series' newest sample.
    OutOfOrder,
    /// Same timestamp as a stored sample, different value.
    DuplicateTimestamp,
    /// Older than the head accepts.
    TooOld,
    /// More than the allowed skew (10 minutes) in the future.
    TooFarInFuture,
    /// Before 1970-01-01 (a negative timestamp): no sender means it, and
    /// block arithmetic at the far edges of `i64` is not worth the risk.
    BeforeEpoch,
    /// The metric has reached its series limit.
    SeriesLimit,
    /// Native histogram samples are not stored yet.
    NativeHistogramUnsupported,
    /// A native histogram breaking Prometheus's structural rules (schema,
    /// span/bucket counts, negative counts, custom bounds).
    InvalidHistogram,
    /// More labels than `--max-labels-per-timeseries`.
    TooManyLabels,
    /// A label name longer than `--max-label-name-len`.
    LabelNameTooLong,
    /// A label value longer than `--max-label-value-len`.
    LabelValueTooLong,
    /// An exemplar whose labels are longer than `--max-exemplar-labels-len`
    /// (counts exemplars, not samples).
    ExemplarLabelsTooLong,
    /// A metadata entry whose help or unit is longer than
    /// `--max-metadata-text-len`, or whose family name is longer than
    /// `--max-label-value-len` (counts entries, not samples).
    MetadataTooLong,
}

impl Reason {
    /// Stable snake_case name, used in messages and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::MissingMetricName => "missing_metric_name",
            Reason::InvalidLabelName => "invalid_label_name",
            Reason::InvalidUtf8 => "invalid_utf8",
            Reason::DuplicateLabelName => "duplicate_label_name",
            Reason::InvalidSymbolRef => "invalid_symbol_ref",
            Reason::OutOfOrder => "out_of_order",
            Reason::DuplicateTimestamp => "duplicate_timestamp",
            Reason::TooOld => "too_old",
            Reason::TooFarInFuture => "too_far_in_future",
            Reason::BeforeEpoch => "before_1970",
            Reason::SeriesLimit => "series_limit",
            Reason::NativeHistogramUnsupported => "native_histogram_unsupported",
            Reason::InvalidHistogram => "invalid_histogram",
            Reason::TooManyLabels => "too_many_labels",
            Reason::LabelNameTooLong => "label_name_too_long",
            Reason::LabelValueTooLong => "label_value_too_long",
            Reason::ExemplarLabelsTooLong => "exemplar_labels_too_long",
            Reason::MetadataTooLong => "metadata_too_long",
        }
    }

    /// Every reason, for metric registration.
    pub const ALL: [Reason; 18] = [
        Reason::MissingMetricName,
        Reason::InvalidLabelName,
        Reason::InvalidUtf8,
        Reason::DuplicateLabelName,
        Reason::InvalidSymbolRef,
        Reason::OutOfOrder,
        Reason::DuplicateTimestamp,
        Reason::TooOld,
        Reason::TooFarInFuture,
        Reason::BeforeEpoch,
        Reason::SeriesLimit,
        Reason::NativeHistogramUnsupported,
        Reason::InvalidHistogram,
        Reason::TooManyLabels,
        Reason::LabelNameTooLong,
        Reason::LabelValueTooLong,
        Reason::ExemplarLabelsTooLong,
        Reason::MetadataTooLong,
    ];

    /// Whether this reason counts samples (else exemplars or metadata
    /// entries, which a partial-write answer lists apart).
    pub fn counts_samples(self) -> bool {
        !matches!(
            self,
            Reason::ExemplarLabelsTooLong | Reason::MetadataTooLong
        )
    }
}

impl From<&crate::storage::SampleError> for Reason {
    fn from(e: &crate::storage::SampleError) -> Self {
        use crate::storage::SampleError as S;
        match e {
            S::OutOfOrder { .. } => Reason::OutOfOrder,
            S::DuplicateSample { .. } => Reason::DuplicateTimestamp,
            S::TooOld { .. } => Reason::TooOld,
            S::SeriesLimit { .. } => Reason::SeriesLimit,
            S::InvalidHistogram(_) => Reason::InvalidHistogram,
        }
    }
}
