//! OTLP requests held to remote write's limits ([`WriteLimits`], the same
//! flags): the whole-request counts before anything is decoded
//! ([`scan_protobuf`], [`check_json`]), and the per-series and per-entry
//! limits after translation ([`check_translated`]).
//!
//! Whole-request limits refuse the request (400, nothing stored), as for
//! remote write. OTLP has no series on the wire, so the counts are:
//! data points, as the samples they become (a number point 1, a classic
//! histogram point 3 plus one per bucket and bound, an exponential one
//! [`HISTOGRAM_SAMPLE_WEIGHT`] plus one per bucket, a summary point 2 plus
//! one per quantile) against `--max-write-samples-per-request`; attributes
//! (resource, scope, point and exemplar attributes, nested values
//! included) against `--max-write-labels-per-request`; resources, scopes
//! and metrics against `--max-write-metadata-per-request`; exemplars
//! against `--max-write-exemplars-per-request`; and, after translation,
//! series against `--max-write-series-per-request`.
//!
//! Per-series limits (labels per series, name and value length) and the
//! future-timestamp limit reject only that series' samples, answered in
//! `partial_success` as the OTLP/HTTP spec says; metadata over its length
//! limits is dropped, as remote write drops it.
//!
//! Owns the counting only; decoding is `otlp.rs`'s, translation
//! `translate.rs`'s.

use crate::ingest::error::{Error, Reason};
use crate::ingest::limits::{
    packed_varints, Counter, Limit, Reader, Scan, Stop, Value, WriteLimits, HISTOGRAM_SAMPLE_WEIGHT,
};
use crate::ingest::otlp::translate::Translated;
use crate::ingest::validate::{check_metadata, check_raw_labels};

/// Deeper than this the scan refuses the request: prost refuses messages
/// nested past 100 (its recursion limit) anyway.
const MAX_DEPTH: usize = 128;

/// Checks the whole-request limits on a protobuf
/// `ExportMetricsServiceRequest` without decoding it.
///
/// Bytes the scan cannot follow refuse the request, unlike remote write's
/// scan, which leaves them to the decoder: prost skips unknown fields of
/// the deprecated group wire type, so a group the scan stopped at would let
/// prost decode, uncounted, everything after it. No OTLP sender writes
/// groups (proto3), and whatever else stops the scan (truncated fields,
/// nesting past 128) prost refuses too.
///
/// # Errors
/// [`Error::TooMany`] naming the limit; [`Error::Protobuf`] for bytes the
/// scan cannot follow.
pub fn scan_protobuf(buf: &[u8], limits: &WriteLimits) -> Result<(), Error> {
    let mut c = Counter::new(limits);
    match scan_request(buf, &mut c) {
        Ok(()) => Ok(()),
        Err(Stop::Malformed | Stop::Group) => Err(Error::Protobuf {
            message: "ExportMetricsServiceRequest",
            reason: format!(
                "a truncated field, a group (wire types 3 and 4) or values nested deeper than {MAX_DEPTH}"
            ),
        }),
        Err(Stop::Limit(e)) => Err(e),
    }
}

/// Calls `each` with every length-delimited field `field` of `buf`.
fn each<'a>(buf: &'a [u8], field: u64, mut each: impl FnMut(&'a [u8]) -> Scan) -> Scan {
    let mut r = Reader(buf);
    while !r.is_empty() {
        if let (f, Value::Bytes(b)) = r.field()? {
            if f == field {
                each(b)?;
            }
        }
    }
    Ok(())
}

fn scan_request(buf: &[u8], c: &mut Counter<'_>) -> Scan {
    // ExportMetricsServiceRequest.resource_metrics = 1.
    each(buf, 1, |rm| {
        c.metadata()?;
        let mut r = Reader(rm);
        while !r.is_empty() {
            match r.field()? {
                // ResourceMetrics.resource = 1 (Resource.attributes = 1).
                (1, Value::Bytes(res)) => each(res, 1, |kv| key_value(kv, c, 3))?,
                // ResourceMetrics.scope_metrics = 2.
                (2, Value::Bytes(sm)) => scope_metrics(sm, c)?,
                _ => {}
            }
        }
        Ok(())
    })
}

fn scope_metrics(buf: &[u8], c: &mut Counter<'_>) -> Scan {
    c.metadata()?;
    let mut r = Reader(buf);
    while !r.is_empty() {
        match r.field()? {
            // ScopeMetrics.scope = 1 (InstrumentationScope.attributes = 3).
            (1, Value::Bytes(scope)) => each(scope, 3, |kv| key_value(kv, c, 4))?,
            // ScopeMetrics.metrics = 2.
            (2, Value::Bytes(m)) => metric(m, c)?,
            _ => {}
        }
    }
    Ok(())
}

fn metric(buf: &[u8], c: &mut Counter<'_>) -> Scan {
    c.metadata()?;
    let mut r = Reader(buf);
    while !r.is_empty() {
        match r.field()? {
            // gauge = 5, sum = 7: NumberDataPoint (attributes 7, exemplars 5).
            (5 | 7, Value::Bytes(d)) => each(d, 1, |p| point(p, c, [7, 5], 1, &[], false))?,
            // histogram = 9: HistogramDataPoint (attributes 9, exemplars 8;
            // bucket_counts 6 packed fixed64, explicit_bounds 7 packed double).
            (9, Value::Bytes(d)) => each(d, 1, |p| point(p, c, [9, 8], 3, &[6, 7], true))?,
            // exponential_histogram = 10 (attributes 1, exemplars 11;
            // positive 8 / negative 9: Buckets.bucket_counts 2 packed varint).
            (10, Value::Bytes(d)) => each(d, 1, |p| exponential(p, c))?,
            // summary = 11: SummaryDataPoint (attributes 7; quantile_values 6).
            (11, Value::Bytes(d)) => each(d, 1, |p| point(p, c, [7, 0], 2, &[6], false))?,
            // Metric.metadata = 12.
            (12, Value::Bytes(kv)) => key_value(kv, c, 4)?,
            _ => {}
        }
    }
    Ok(())
}

/// A number, classic histogram or summary point with `[attributes,
/// exemplars]` field numbers (0: none): `weight` samples, one more per
/// entry of the `repeated` fields (`packed8`: packed eight-byte numbers;
/// otherwise messages, one each).
fn point(
    buf: &[u8],
    c: &mut Counter<'_>,
    [attributes, exemplars]: [u64; 2],
    weight: usize,
    repeated: &[u64],
    packed8: bool,
) -> Scan {
    c.samples(weight)?;
    let mut r = Reader(buf);
    while !r.is_empty() {
        match r.field()? {
            (f, Value::Bytes(kv)) if f == attributes => key_value(kv, c, 6)?,
            (f, Value::Bytes(e)) if f == exemplars && exemplars != 0 => exemplar(e, c)?,
            (f, Value::Bytes(b)) if repeated.contains(&f) && packed8 => c.samples(b.len() / 8)?,
            (f, _) if repeated.contains(&f) => c.samples(1)?,
            _ => {}
        }
    }
    Ok(())
}

fn exponential(buf: &[u8], c: &mut Counter<'_>) -> Scan {
    c.samples(HISTOGRAM_SAMPLE_WEIGHT)?;
    let mut r = Reader(buf);
    while !r.is_empty() {
        match r.field()? {
            (1, Value::Bytes(kv)) => key_value(kv, c, 6)?,
            (11, Value::Bytes(e)) => exemplar(e, c)?,
            (8 | 9, Value::Bytes(b)) => {
                let mut br = Reader(b);
                while !br.is_empty() {
                    match br.field()? {
                        (2, Value::Bytes(p)) => c.samples(packed_varints(p))?,
                        (2, _) => c.samples(1)?,
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    Ok(())
}

fn exemplar(buf: &[u8], c: &mut Counter<'_>) -> Scan {
    c.exemplar()?;
    // Exemplar.filtered_attributes = 7.
    each(buf, 7, |kv| key_value(kv, c, 8))
}

/// A `KeyValue` at message depth `depth`: one label, plus its value's
/// nested values.
fn key_value(buf: &[u8], c: &mut Counter<'_>, depth: usize) -> Scan {
    c.labels(1)?;
    // KeyValue.value = 2.
    each(buf, 2, |v| any_value(v, c, depth + 1))
}

/// An `AnyValue`: arrays (5, `ArrayValue.values` = 1) and key-value lists
/// (6, `KeyValueList.values` = 1) count each entry as a label.
fn any_value(buf: &[u8], c: &mut Counter<'_>, depth: usize) -> Scan {
    if depth > MAX_DEPTH {
        return Err(Stop::Malformed);
    }
    let mut r = Reader(buf);
    while !r.is_empty() {
        match r.field()? {
            (5, Value::Bytes(a)) => each(a, 1, |v| {
                c.labels(1)?;
                any_value(v, c, depth + 2)
            })?,
            (6, Value::Bytes(l)) => each(l, 1, |kv| key_value(kv, c, depth + 2))?,
            _ => {}
        }
    }
    Ok(())
}

/// The most objects and arrays a JSON body may open: every one of them is
/// at least an entry of some limit (a point, an attribute, a metric, an
/// exemplar), so their sum bounds what the JSON decoder allocates before
/// the decoded request is counted exactly ([`scan_protobuf`] of its
/// protobuf form).
pub fn json_values_limit(limits: &WriteLimits) -> usize {
    limits
        .max_samples_per_request
        .saturating_add(limits.max_labels_per_request.saturating_mul(2))
        .saturating_add(limits.max_metadata_per_request)
        .saturating_add(limits.max_exemplars_per_request)
}

/// Counts the objects and arrays a JSON body opens (outside strings) and
/// refuses it past [`json_values_limit`], before it is decoded.
///
/// # Errors
/// The limit, when exceeded.
pub fn check_json(buf: &[u8], limits: &WriteLimits) -> Result<(), usize> {
    let max = json_values_limit(limits);
    let (mut n, mut in_string, mut escaped) = (0usize, false, false);
    for &b in buf {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                n += 1;
                if n > max {
                    return Err(max);
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// What [`check_translated`] refused.
#[derive(Debug, Default)]
pub struct Refused {
    /// Samples (float and histogram) refused, by reason.
    pub samples: std::collections::BTreeMap<Reason, usize>,
    /// The first refusal's detail, with its series.
    pub first: Option<String>,
    /// Metadata entries dropped for their length.
    pub metadata_dropped: usize,
}

impl Refused {
    fn refuse(&mut self, reason: Reason, n: usize, what: impl FnOnce() -> String) {
        if n == 0 {
            return;
        }
        *self.samples.entry(reason).or_default() += n;
        if self.first.is_none() {
            self.first = Some(what());
        }
    }

    /// Samples refused in total.
    pub fn total(&self) -> usize {
        self.samples.values().sum()
    }
}

/// Applies the per-request series limit, the per-series limits and the
/// future limit (`max_t`, ms) to a translated request, removing what they
/// refuse, and drops metadata entries over their length limits.
///
/// # Errors
/// [`Error::TooMany`] for more series than `--max-write-series-per-request`
/// (nothing is stored).
pub fn check_translated(
    t: &mut Translated,
    limits: &WriteLimits,
    max_t: i64,
) -> Result<Refused, Error> {
    if t.series.len() > limits.max_series_per_request {
        return Err(Error::TooMany {
            limit: Limit::SeriesPerRequest,
            max: limits.max_series_per_request,
        });
    }
    let mut refused = Refused::default();
    t.series.retain_mut(|s| {
        let pairs = s
            .labels
            .iter()
            .map(|l| (l.name.as_bytes(), l.value.as_bytes()));
        if let Err(p) = check_raw_labels(pairs.collect::<Vec<_>>().into_iter(), limits) {
            let n = s.samples.len() + s.histograms.len();
            refused.refuse(p.reason, n, || format!("{}: {}", s.labels, p.detail));
            return false;
        }
        let before = s.samples.len() + s.histograms.len();
        s.samples.retain(|x| x.t <= max_t);
        s.histograms.retain(|x| x.t <= max_t);
        s.created.retain(|&c| c <= max_t);
        let future = before - s.samples.len() - s.histograms.len();
        refused.refuse(Reason::TooFarInFuture, future, || {
            format!(
                "{}: sample more than the allowed skew in the future",
                s.labels
            )
        });
        !(s.samples.is_empty() && s.histograms.is_empty())
    });
    let before = t.metadata.len();
    t.metadata.retain(|m| {
        check_metadata(
            [m.metric.as_bytes(), m.help.as_bytes(), m.unit.as_bytes()],
            limits,
        )
        .is_ok()
    });
    refused.metadata_dropped = before - t.metadata.len();
    Ok(refused)
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;
    use tidemark_proto::opentelemetry::proto::collector::metrics::v1::ExportMetricsServiceRequest;
    use tidemark_proto::opentelemetry::proto::common::v1::{any_value, AnyValue, KeyValue};
    use tidemark_proto::opentelemetry::proto::metrics::v1 as m;

    fn kv(k: &str) -> KeyValue {
        KeyValue {
            key: k.into(),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue("v".into())),
            }),
            ..Default::default()
        }
    }

    /// One resource, one scope, one gauge of `points` points with
    /// `attrs` attributes each.
    fn request(points: usize, attrs: usize) -> ExportMetricsServiceRequest {
        let p = m::NumberDataPoint {
            attributes: (0..attrs).map(|i| kv(&format!("a{i}"))).collect(),
            time_unix_nano: 1,
            value: Some(m::number_data_point::Value::AsDouble(1.0)),
            ..Default::default()
        };
        ExportMetricsServiceRequest {
            resource_metrics: vec![m::ResourceMetrics {
                scope_metrics: vec![m::ScopeMetrics {
                    metrics: vec![m::Metric {
                        name: "g".into(),
                        data: Some(m::metric::Data::Gauge(m::Gauge {
                            data_points: vec![p; points],
                        })),
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }

    fn limit_of(r: Result<(), Error>) -> Option<Limit> {
        match r {
            Ok(()) => None,
            Err(Error::TooMany { limit, .. }) => Some(limit),
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn scan_counts_points_attributes_and_metrics() {
        let limits = WriteLimits {
            max_samples_per_request: 10,
            max_labels_per_request: 20,
            max_metadata_per_request: 3,
            ..WriteLimits::DEFAULT
        };
        let scan =
            |r: ExportMetricsServiceRequest| limit_of(scan_protobuf(&r.encode_to_vec(), &limits));
        assert_eq!(scan(request(10, 2)), None);
        assert_eq!(scan(request(11, 0)), Some(Limit::SamplesPerRequest));
        assert_eq!(scan(request(7, 3)), Some(Limit::LabelsPerRequest));
        // Resource + scope + metric = 3 entries; a second metric is one more.
        let mut r = request(1, 0);
        let metric = r.resource_metrics[0].scope_metrics[0].metrics[0].clone();
        r.resource_metrics[0].scope_metrics[0].metrics.push(metric);
        assert_eq!(scan(r), Some(Limit::MetadataPerRequest));
    }

    #[test]
    fn scan_counts_histogram_buckets_and_nested_attribute_values() {
        let limits = WriteLimits {
            max_samples_per_request: 100,
            max_labels_per_request: 10,
            ..WriteLimits::DEFAULT
        };
        let mut r = request(0, 0);
        r.resource_metrics[0].scope_metrics[0].metrics[0].data =
            Some(m::metric::Data::Histogram(m::Histogram {
                data_points: vec![m::HistogramDataPoint {
                    bucket_counts: vec![1; 60],
                    explicit_bounds: vec![1.0; 59],
                    ..Default::default()
                }],
                aggregation_temporality: 2,
            }));
        // 3 + 60 + 59 samples.
        assert_eq!(
            limit_of(scan_protobuf(&r.encode_to_vec(), &limits)),
            Some(Limit::SamplesPerRequest)
        );
        // One resource attribute holding an array of 20 values.
        let mut r = request(1, 0);
        let array = AnyValue {
            value: Some(any_value::Value::ArrayValue(
                tidemark_proto::opentelemetry::proto::common::v1::ArrayValue {
                    values: vec![AnyValue::default(); 20],
                },
            )),
        };
        r.resource_metrics[0].resource = Some(
            tidemark_proto::opentelemetry::proto::resource::v1::Resource {
                attributes: vec![KeyValue {
                    key: "a".into(),
                    value: Some(array),
                    ..Default::default()
                }],
                ..Default::default()
            },
        );
        assert_eq!(
            limit_of(scan_protobuf(&r.encode_to_vec(), &limits)),
            Some(Limit::LabelsPerRequest)
        );
    }

    /// A group field (wire types 3/4) that prost would skip, followed by
    /// points: refused, not left uncounted.
    #[test]
    fn scan_refuses_what_it_cannot_follow() {
        let limits = WriteLimits {
            max_samples_per_request: 10,
            ..WriteLimits::DEFAULT
        };
        let mut body = vec![(15 << 3) | 3, (15 << 3) | 4];
        body.extend(request(100, 0).encode_to_vec());
        assert!(ExportMetricsServiceRequest::decode(&body[..]).is_ok());
        assert!(matches!(
            scan_protobuf(&body, &limits),
            Err(Error::Protobuf { .. })
        ));
        assert!(matches!(
            scan_protobuf(&[0x0a, 0x05, 0x01], &limits),
            Err(Error::Protobuf { .. })
        ));
    }

    #[test]
    fn json_values_are_bounded_outside_strings() {
        let limits = WriteLimits {
            max_samples_per_request: 1,
            max_labels_per_request: 1,
            max_metadata_per_request: 1,
            max_exemplars_per_request: 1,
            ..WriteLimits::DEFAULT
        };
        assert_eq!(json_values_limit(&limits), 5);
        assert_eq!(
            check_json(br#"{"a":[{},{}],"b":"{{{{{{\"{{{{"}"#, &limits),
            Ok(())
        );
        assert_eq!(check_json(b"[{},{},{},{},{}]", &limits), Err(5));
    }
}
