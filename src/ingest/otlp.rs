//! The OTLP/HTTP metrics receiver's ingest side: decoding an
//! `ExportMetricsServiceRequest` (protobuf or JSON, optionally gzip),
//! holding it to remote write's limits ([`limits`]), translating it as
//! Prometheus 3 does ([`translate`], [`names`]) and appending the result
//! through the same [`Db::append_with`] path as remote write (with its
//! metadata).
//!
//! Owns OTLP's wire and mapping; the HTTP shape (status codes, the
//! response body) is `api/otlp.rs`'s.

pub mod limits;
pub mod names;
pub mod translate;

use std::io::Read;

use prost::Message;
use tidemark_proto::opentelemetry::proto::collector::metrics::v1::{
    ExportMetricsPartialSuccess, ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};

use crate::ingest::limits::{Limit, WriteLimits};
use crate::ingest::otlp::translate::TranslateOptions;
use crate::storage::{wal, AppendExtras, Db};

/// The body encodings OTLP/HTTP defines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtlpEncoding {
    /// `application/x-protobuf`.
    Protobuf,
    /// `application/json` (the protobuf JSON mapping).
    Json,
}

/// Why an OTLP request was refused as a whole.
#[derive(Debug, thiserror::Error)]
pub enum OtlpError {
    /// A `Content-Type` other than protobuf or JSON.
    #[error("unsupported Content-Type {0:?}: OTLP/HTTP takes application/x-protobuf or application/json")]
    UnsupportedContentType(String),
    /// A `Content-Encoding` other than gzip or none.
    #[error("unsupported Content-Encoding {0:?}: use gzip or none")]
    UnsupportedEncoding(String),
    /// The body inflates past the limit.
    #[error("decompressed body larger than {limit} bytes (--max-write-decompressed-bytes)")]
    DecompressedTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// Not gzip.
    #[error("gzip: {0}")]
    Gzip(String),
    /// More of something than a whole-request limit allows; nothing stored.
    #[error("request has more than {max} {}; the limit is set by {}", limit.what(), limit.flag())]
    TooMany {
        /// The limit exceeded.
        limit: Limit,
        /// Its value.
        max: usize,
    },
    /// A JSON body opening more objects and arrays than the limits allow.
    #[error("JSON body has more than {max} objects and arrays (the sum of --max-write-samples-per-request, twice --max-write-labels-per-request, --max-write-metadata-per-request and --max-write-exemplars-per-request)")]
    JsonTooLarge {
        /// The bound.
        max: usize,
    },
    /// Not an `ExportMetricsServiceRequest`.
    #[error("decoding {encoding:?} ExportMetricsServiceRequest: {reason}")]
    Decode {
        /// The body encoding.
        encoding: OtlpEncoding,
        /// What the decoder said.
        reason: String,
    },
    /// Storage could not take the batch (retryable).
    #[error("storage: {0}")]
    Storage(#[from] crate::storage::Error),
}

impl From<crate::ingest::Error> for OtlpError {
    fn from(e: crate::ingest::Error) -> Self {
        use crate::ingest::Error as I;
        match e {
            I::TooMany { limit, max } => OtlpError::TooMany { limit, max },
            I::Protobuf { reason, .. } => OtlpError::Decode {
                encoding: OtlpEncoding::Protobuf,
                reason,
            },
            I::Storage(s) => OtlpError::Storage(s),
            // The limit checks raise nothing else.
            other => OtlpError::Decode {
                encoding: OtlpEncoding::Protobuf,
                reason: other.to_string(),
            },
        }
    }
}

/// What happened to an accepted request.
#[derive(Debug, Clone, PartialEq)]
pub struct OtlpOutcome {
    /// Data points stored (after translation).
    pub points: usize,
    /// Data points refused, and why (for `partial_success`).
    pub rejected: usize,
    /// The first reasons, for `partial_success.error_message`.
    pub message: String,
    /// Series samples stored (a histogram point makes several).
    pub samples_written: usize,
    /// Zero samples stored at created timestamps.
    pub created_zeros: usize,
}

impl OtlpOutcome {
    /// The OTLP response: empty on full success, `partial_success` otherwise.
    pub fn response(&self) -> ExportMetricsServiceResponse {
        ExportMetricsServiceResponse {
            partial_success: (self.rejected > 0).then(|| ExportMetricsPartialSuccess {
                rejected_data_points: i64::try_from(self.rejected).unwrap_or(i64::MAX),
                error_message: self.message.clone(),
            }),
        }
    }
}

/// The body encoding of a `Content-Type`, parameters ignored.
///
/// # Errors
/// [`OtlpError::UnsupportedContentType`].
pub fn encoding_of(content_type: Option<&str>) -> Result<OtlpEncoding, OtlpError> {
    let ct = content_type.unwrap_or("");
    let media = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match media.as_str() {
        "application/x-protobuf" | "application/protobuf" => Ok(OtlpEncoding::Protobuf),
        "application/json" => Ok(OtlpEncoding::Json),
        _ => Err(OtlpError::UnsupportedContentType(ct.to_string())),
    }
}

/// Decodes a request body: gunzips (bounded by `max_decompressed`) when
/// `content_encoding` says gzip, checks the whole-request `limits`
/// ([`limits::scan_protobuf`] before a protobuf body is decoded; for JSON
/// [`limits::check_json`] before and the same scan of the decoded request
/// after), then protobuf or JSON.
///
/// # Errors
/// [`OtlpError`] naming the problem or the limit.
pub fn decode(
    encoding: OtlpEncoding,
    content_encoding: Option<&str>,
    body: &[u8],
    max_decompressed: usize,
    limits: &WriteLimits,
) -> Result<ExportMetricsServiceRequest, OtlpError> {
    let owned;
    let raw = match content_encoding
        .map(|e| e.trim().to_ascii_lowercase())
        .as_deref()
    {
        None | Some("") | Some("identity") => body,
        Some("gzip") => {
            let mut out = Vec::new();
            let limit = u64::try_from(max_decompressed).unwrap_or(u64::MAX);
            flate2::read::GzDecoder::new(body)
                .take(limit.saturating_add(1))
                .read_to_end(&mut out)
                .map_err(|e| OtlpError::Gzip(e.to_string()))?;
            if out.len() > max_decompressed {
                return Err(OtlpError::DecompressedTooLarge {
                    limit: max_decompressed,
                });
            }
            owned = out;
            &owned
        }
        Some(other) => return Err(OtlpError::UnsupportedEncoding(other.to_string())),
    };
    let fail = |reason: String| OtlpError::Decode { encoding, reason };
    match encoding {
        OtlpEncoding::Protobuf => {
            limits::scan_protobuf(raw, limits)?;
            ExportMetricsServiceRequest::decode(raw).map_err(|e| fail(e.to_string()))
        }
        OtlpEncoding::Json => {
            limits::check_json(raw, limits).map_err(|max| OtlpError::JsonTooLarge { max })?;
            let req: ExportMetricsServiceRequest =
                serde_json::from_slice(raw).map_err(|e| fail(e.to_string()))?;
            limits::scan_protobuf(&req.encode_to_vec(), limits)?;
            Ok(req)
        }
    }
}

/// What [`write`] needs besides the request: translation settings and the
/// limits.
#[derive(Debug, Clone, Copy)]
pub struct WriteSettings<'a> {
    /// How names, labels and temporalities are translated.
    pub translate: &'a TranslateOptions,
    /// Per-series and per-request limits (remote write's).
    pub limits: &'a WriteLimits,
    /// Newest timestamp accepted, ms (now plus the allowed skew).
    pub max_t: i64,
}

/// Translates and stores a decoded request. Points that translation, the
/// per-series limits or storage refuse are counted, never a failure of the
/// rest. With `created_zero` (`--enable-created-timestamp-zero-ingestion`),
/// start times of cumulative points become zero samples when newer than
/// their series' newest sample ([`translate::translate_with`]).
///
/// # Errors
/// [`OtlpError::TooMany`] for more series than allowed (nothing stored);
/// [`OtlpError::Storage`] when nothing could be stored (retryable).
pub fn write(
    db: &Db,
    req: &ExportMetricsServiceRequest,
    settings: WriteSettings<'_>,
) -> Result<OtlpOutcome, OtlpError> {
    let (outcome, durable) = write_pending(db, req, settings)?;
    durable.wait().map_err(crate::storage::Error::from)?;
    Ok(outcome)
}

/// [`write`] without the wait for the WAL fsync: the outcome may be
/// acknowledged once the returned [`wal::Durable`] says so (the HTTP
/// handler waits off its ingest threads).
///
/// # Errors
/// As [`write`]; [`wal::Durable::wait`] reports a failed fsync.
pub fn write_pending(
    db: &Db,
    req: &ExportMetricsServiceRequest,
    settings: WriteSettings<'_>,
) -> Result<(OtlpOutcome, wal::Durable), OtlpError> {
    let mut t = translate::translate_with(req, settings.translate);
    let refused = limits::check_translated(&mut t, settings.limits, settings.max_t)?;
    let mut messages: Vec<String> = t
        .refused
        .iter()
        .map(|(why, (n, metric))| {
            format!(
                "{n} points refused ({}), e.g. metric {metric:?}",
                why.as_str()
            )
        })
        .collect();
    if let Some(first) = &refused.first {
        let reasons: Vec<String> = refused
            .samples
            .iter()
            .map(|(r, n)| format!("{}={n}", r.as_str()))
            .collect();
        messages.push(format!(
            "{} samples refused ({}), first {first}",
            refused.total(),
            reasons.join(", ")
        ));
    }
    if t.target_info_skipped > 0 {
        messages.push(format!(
            "target_info skipped for {} resources: their points span more than {} steps of 2.5 minutes ({})",
            t.target_info_skipped,
            settings.translate.max_target_info_samples,
            Limit::SamplesPerRequest.flag(),
        ));
    }
    if refused.metadata_dropped > 0 {
        messages.push(format!(
            "{} metadata entries dropped: help or unit longer than {} bytes ({}) or name longer than {} ({})",
            refused.metadata_dropped,
            settings.limits.max_metadata_text_len,
            Limit::MetadataTextLength.flag(),
            settings.limits.max_label_value_len,
            Limit::LabelValueLength.flag(),
        ));
    }
    let extras = AppendExtras {
        exemplars: Vec::new(),
        metadata: t.metadata.clone(),
    };
    let hints = vec![None; t.series.len()];
    let (appended, _, durable) = db.append_pending(&t.series, &hints, &extras)?;
    if let Some(first) = appended.rejected.first() {
        let labels = &t.series[first.series].labels;
        messages.push(format!(
            "{} samples refused by storage, first {labels}: {}",
            appended.rejected.len(),
            first.error
        ));
    }
    let outcome = OtlpOutcome {
        points: t.points,
        rejected: t.refused_points() + refused.total() + appended.rejected.len(),
        message: messages.join("; "),
        samples_written: appended.appended + appended.duplicates,
        created_zeros: appended.created_zeros,
    };
    Ok((outcome, durable))
}

/// Encodes `resp` in `encoding`.
pub fn encode_response(resp: &ExportMetricsServiceResponse, encoding: OtlpEncoding) -> Vec<u8> {
    match encoding {
        OtlpEncoding::Protobuf => resp.encode_to_vec(),
        OtlpEncoding::Json => serde_json::to_vec(resp).unwrap_or_else(|_| b"{}".to_vec()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(500))]

        /// The stable-toolchain twin of `fuzz/fuzz_targets/fuzz_otlp.rs`.
        #[test]
        fn prop_arbitrary_bodies_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            for (encoding, gzip) in [
                (OtlpEncoding::Protobuf, None),
                (OtlpEncoding::Json, None),
                (OtlpEncoding::Protobuf, Some("gzip")),
            ] {
                if let Ok(req) = decode(encoding, gzip, &bytes, 1 << 20, &WriteLimits::DEFAULT) {
                    let _ = translate::translate(&req);
                }
            }
        }

        /// Well-formed requests with arbitrary names, units, values,
        /// scales and bucket layouts translate without panicking.
        #[test]
        fn prop_arbitrary_requests_translate(
            name in "[a-z._0-9{}/ ]{0,16}",
            unit in "[a-zA-Z1%/{}]{0,6}",
            scale in -10i32..30,
            offset in any::<i32>(),
            counts in proptest::collection::vec(0u64..5, 0..20),
            t in any::<u64>(),
        ) {
            use tidemark_proto::opentelemetry::proto::metrics::v1 as m;
            let point = m::ExponentialHistogramDataPoint {
                time_unix_nano: t,
                scale,
                count: counts.iter().sum(),
                positive: Some(m::exponential_histogram_data_point::Buckets {
                    offset,
                    bucket_counts: counts.clone(),
                }),
                ..Default::default()
            };
            let req = ExportMetricsServiceRequest {
                resource_metrics: vec![m::ResourceMetrics {
                    scope_metrics: vec![m::ScopeMetrics {
                        metrics: vec![m::Metric {
                            name,
                            unit,
                            data: Some(m::metric::Data::ExponentialHistogram(m::ExponentialHistogram {
                                data_points: vec![point],
                                aggregation_temporality: 2,
                            })),
                            ..Default::default()
                        }],
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
            };
            let _ = translate::translate(&req);
        }
    }

    #[test]
    fn content_types() {
        assert_eq!(
            encoding_of(Some("application/x-protobuf")).unwrap(),
            OtlpEncoding::Protobuf
        );
        assert_eq!(
            encoding_of(Some("application/json; charset=utf-8")).unwrap(),
            OtlpEncoding::Json
        );
        assert!(encoding_of(Some("text/plain")).is_err());
        assert!(encoding_of(None).is_err());
    }
}
