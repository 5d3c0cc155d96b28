//! Remote-write bodies as Prometheus's queue manager builds them: one
//! `TimeSeries` per sample, in batch order, protobuf then a snappy block;
//! 1.0 (`prometheus.WriteRequest`) or 2.0 (`io.prometheus.write.v2.Request`,
//! with a per-request symbol table and type/help metadata), optionally with
//! an exemplar (a 32-hex-digit `trace_id`) on every sample of 1 in N
//! series; or OTLP/HTTP (`ExportMetricsServiceRequest`, protobuf,
//! optionally gzip) carrying the same series: one metric per name, one
//! data point per sample with the other labels as attributes, so the
//! server's default translation gives the same label sets. Uses the
//! generated types of `tidemark-proto`; no proto is written here.

use std::collections::HashMap;

use bytes::Bytes;
use prost::Message;

use super::workload::{Batch, MetricType, SeriesDef};
use tidemark_proto::opentelemetry::proto::collector::metrics::v1::ExportMetricsServiceRequest;
use tidemark_proto::opentelemetry::proto::common::v1::{any_value, AnyValue, KeyValue};
use tidemark_proto::opentelemetry::proto::metrics::v1 as otlp;
use tidemark_proto::{prometheus as v1, write_v2 as v2};

/// Remote-write protocol version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Protocol {
    /// Remote write 1.0 (what Prometheus 2.42 and VictoriaMetrics 1.79 accept).
    #[value(name = "1")]
    V1,
    /// Remote write 2.0.
    #[value(name = "2")]
    V2,
    /// OTLP/HTTP metrics, protobuf (`/api/v1/otlp/v1/metrics`).
    #[value(name = "otlp")]
    Otlp,
}

impl Protocol {
    /// The `Content-Type` header.
    pub fn content_type(self) -> &'static str {
        match self {
            Self::V1 | Self::Otlp => "application/x-protobuf",
            Self::V2 => "application/x-protobuf;proto=io.prometheus.write.v2.Request",
        }
    }

    /// The request headers of a body of this protocol; `gzip` only
    /// matters for OTLP (remote write is always snappy).
    pub fn headers(self, gzip: bool) -> Vec<(&'static str, &'static str)> {
        let mut h = vec![("Content-Type", self.content_type())];
        match self {
            Self::V1 | Self::V2 => {
                h.push(("Content-Encoding", "snappy"));
                h.push(("X-Prometheus-Remote-Write-Version", self.version_header()));
            }
            Self::Otlp if gzip => h.push(("Content-Encoding", "gzip")),
            Self::Otlp => {}
        }
        h
    }

    /// The `X-Prometheus-Remote-Write-Version` header.
    pub fn version_header(self) -> &'static str {
        match self {
            Self::V1 => "0.1.0",
            Self::V2 => "2.0.0",
            Self::Otlp => "",
        }
    }

    /// `1.0` or `2.0`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::V1 => "1.0",
            Self::V2 => "2.0",
            Self::Otlp => "OTLP",
        }
    }
}

/// An encoded request body and what it carries.
#[derive(Debug, Clone)]
pub struct Body {
    /// Snappy-compressed protobuf.
    pub bytes: Bytes,
    /// Samples in it.
    pub samples: u32,
    /// Earliest sample timestamp in it, ms.
    pub min_t: i64,
}

/// Encodes batches of one workload; label bytes are built once per series.
#[derive(Debug)]
pub struct Encoder {
    protocol: Protocol,
    labels: Vec<Vec<v1::Label>>,
    types: Vec<MetricType>,
    /// Series `i` with `i % exemplars_one_in == 0` carry an exemplar on
    /// every sample; 0: none.
    exemplars_one_in: u32,
    /// OTLP: gzip bodies.
    gzip: bool,
}

/// The exemplar of sample `(series, t, v)`: `trace_id` = series and time
/// as 32 hex digits (an OpenTelemetry trace id's length).
fn trace_id(series: u32, t: i64) -> Bytes {
    Bytes::from(format!("{:016x}{:016x}", series, t as u64))
}

impl Encoder {
    /// An encoder for `series` (the indices in batches point into it).
    pub fn new(protocol: Protocol, series: &[SeriesDef]) -> Self {
        Self {
            protocol,
            labels: series
                .iter()
                .map(|s| {
                    s.labels
                        .iter()
                        .map(|(n, v)| v1::Label {
                            name: Bytes::copy_from_slice(n.as_bytes()),
                            value: Bytes::copy_from_slice(v.as_bytes()),
                        })
                        .collect()
                })
                .collect(),
            types: series.iter().map(|s| s.metric_type).collect(),
            exemplars_one_in: 0,
            gzip: false,
        }
    }

    /// This encoder, gzipping OTLP bodies.
    pub fn with_gzip(mut self, gzip: bool) -> Self {
        self.gzip = gzip;
        self
    }

    /// The OTLP message of `batch`: one resource, one scope, one gauge per
    /// name in first-use order, one point per sample with the series'
    /// labels but `__name__` as string attributes. Gauges without a unit
    /// keep their names under the default translation (a monotonic sum
    /// would gain `_total`: `node_vmstat_pgfault` would not arrive as
    /// itself), so the server stores exactly the remote-write series.
    pub fn otlp(&self, batch: &Batch) -> ExportMetricsServiceRequest {
        let mut order: Vec<Bytes> = Vec::new();
        let mut points: HashMap<Bytes, Vec<otlp::NumberDataPoint>> = HashMap::new();
        for p in batch {
            let labels = &self.labels[p.series as usize];
            let name = labels
                .iter()
                .find(|l| l.name.as_ref() == b"__name__")
                .map_or_else(Bytes::new, |l| l.value.clone());
            let attributes = labels
                .iter()
                .filter(|l| l.name.as_ref() != b"__name__")
                .map(|l| KeyValue {
                    key: String::from_utf8_lossy(&l.name).into_owned(),
                    value: Some(AnyValue {
                        value: Some(any_value::Value::StringValue(
                            String::from_utf8_lossy(&l.value).into_owned(),
                        )),
                    }),
                    ..Default::default()
                })
                .collect();
            let point = otlp::NumberDataPoint {
                attributes,
                time_unix_nano: u64::try_from(p.t).unwrap_or(0).saturating_mul(1_000_000),
                value: Some(otlp::number_data_point::Value::AsDouble(p.v)),
                ..Default::default()
            };
            points
                .entry(name.clone())
                .or_insert_with(|| {
                    order.push(name);
                    Vec::new()
                })
                .push(point);
        }
        let metrics = order
            .into_iter()
            .filter_map(|name| {
                let data_points = points.remove(&name)?;
                Some(otlp::Metric {
                    name: String::from_utf8_lossy(&name).into_owned(),
                    data: Some(otlp::metric::Data::Gauge(otlp::Gauge { data_points })),
                    ..Default::default()
                })
            })
            .collect();
        ExportMetricsServiceRequest {
            resource_metrics: vec![otlp::ResourceMetrics {
                scope_metrics: vec![otlp::ScopeMetrics {
                    scope: None,
                    metrics,
                    schema_url: String::new(),
                }],
                ..Default::default()
            }],
        }
    }

    /// This encoder, attaching an exemplar to every sample of 1 in
    /// `one_in` series (0: no exemplars, the default).
    pub fn with_exemplars(mut self, one_in: u32) -> Self {
        self.exemplars_one_in = one_in;
        self
    }

    fn has_exemplar(&self, series: u32) -> bool {
        self.exemplars_one_in > 0 && series.is_multiple_of(self.exemplars_one_in)
    }

    /// The protocol bodies are encoded with.
    pub fn protocol(&self) -> Protocol {
        self.protocol
    }

    /// The 1.0 message of `batch`.
    pub fn v1(&self, batch: &Batch) -> v1::WriteRequest {
        v1::WriteRequest {
            timeseries: batch
                .iter()
                .map(|p| v1::TimeSeries {
                    labels: self.labels[p.series as usize].clone(),
                    samples: vec![v1::Sample {
                        value: p.v,
                        timestamp: p.t,
                    }],
                    exemplars: if self.has_exemplar(p.series) {
                        vec![v1::Exemplar {
                            labels: vec![v1::Label {
                                name: Bytes::from_static(b"trace_id"),
                                value: trace_id(p.series, p.t),
                            }],
                            value: p.v,
                            timestamp: p.t,
                        }]
                    } else {
                        Vec::new()
                    },
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }

    /// The 2.0 message of `batch`: symbol 0 is `""`, then every label
    /// name and value in first-use order.
    pub fn v2(&self, batch: &Batch) -> v2::Request {
        let mut symbols: Vec<Bytes> = vec![Bytes::new()];
        let mut refs: HashMap<Bytes, u32> = HashMap::from([(Bytes::new(), 0)]);
        let mut sym = |b: &Bytes| -> u32 {
            *refs.entry(b.clone()).or_insert_with(|| {
                symbols.push(b.clone());
                (symbols.len() - 1) as u32
            })
        };
        let timeseries = batch
            .iter()
            .map(|p| {
                let labels_refs = self.labels[p.series as usize]
                    .iter()
                    .flat_map(|l| [sym(&l.name), sym(&l.value)])
                    .collect();
                let r#type = match self.types[p.series as usize] {
                    MetricType::Counter => v2::metadata::MetricType::Counter,
                    MetricType::Gauge => v2::metadata::MetricType::Gauge,
                    MetricType::Histogram => v2::metadata::MetricType::Histogram,
                };
                let exemplars = if self.has_exemplar(p.series) {
                    let labels_refs = vec![
                        sym(&Bytes::from_static(b"trace_id")),
                        sym(&trace_id(p.series, p.t)),
                    ];
                    vec![v2::Exemplar {
                        labels_refs,
                        value: p.v,
                        timestamp: p.t,
                    }]
                } else {
                    Vec::new()
                };
                v2::TimeSeries {
                    labels_refs,
                    exemplars,
                    samples: vec![v2::Sample {
                        value: p.v,
                        timestamp: p.t,
                        ..Default::default()
                    }],
                    metadata: Some(v2::Metadata {
                        r#type: r#type as i32,
                        ..Default::default()
                    }),
                    ..Default::default()
                }
            })
            .collect();
        v2::Request {
            symbols,
            timeseries,
        }
    }

    /// The body of `batch`: snappy-compressed remote write, or OTLP
    /// protobuf (gzip when asked).
    pub fn encode(&self, batch: &Batch) -> Body {
        let bytes = match self.protocol {
            Protocol::V1 => snappy(&self.v1(batch).encode_to_vec()),
            Protocol::V2 => snappy(&self.v2(batch).encode_to_vec()),
            Protocol::Otlp if self.gzip => {
                use std::io::Write as _;
                let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                gz.write_all(&self.otlp(batch).encode_to_vec())
                    .expect("writing to a Vec cannot fail");
                gz.finish().expect("writing to a Vec cannot fail")
            }
            Protocol::Otlp => self.otlp(batch).encode_to_vec(),
        };
        Body {
            bytes: Bytes::from(bytes),
            samples: batch.len() as u32,
            min_t: batch.iter().map(|p| p.t).min().unwrap_or(i64::MAX),
        }
    }
}

fn snappy(raw: &[u8]) -> Vec<u8> {
    snap::raw::Encoder::new()
        .compress_vec(raw)
        .expect("snappy compresses any input below 4 GiB")
}
