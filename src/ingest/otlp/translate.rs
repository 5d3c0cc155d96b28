//! OTLP metrics → Tidemark series, as Prometheus 3's OTLP translator
//! (`storage/remote/otlptranslator/prometheusremotewrite`) maps them:
//! gauges and non-monotonic sums become gauges, monotonic cumulative sums
//! counters (`_total`), histograms classic `_bucket{le}`/`_count`/`_sum`
//! series, summaries `{quantile}`/`_count`/`_sum`, exponential histograms
//! native histograms (scale above 8 merged down to schema 8). `job` is
//! `service.namespace/service.name`, `instance` `service.instance.id`; the
//! other resource attributes go to `target_info`. Points flagged "no
//! recorded value" become staleness markers. Delta temporality is refused
//! per point with a reason, or stored as it is with
//! [`TranslateOptions::native_delta_ingestion`].
//!
//! [`TranslateOptions`] carries Prometheus 3's `otlp` configuration
//! (`config/config.go` `OTLPConfig`): the translation strategy, promoted
//! resource attributes, identifying attributes kept on `target_info`, scope
//! metadata as labels. Label precedence follows `createAttributes`
//! (`storage/remote/otlptranslator/prometheusremotewrite/helper.go` at
//! prometheus/prometheus d15adb9ad7e5d9fbde3a9a8f30200593a5a14d86): point
//! attributes, then promoted resource attributes where the point has none
//! of that name, then `job`/`instance`, then scope labels, then `le` /
//! `quantile` and `__name__`.
//!
//! Owns the mapping only: no I/O, no storage. Input is already decoded.

use std::collections::BTreeMap;

use tidemark_proto::opentelemetry::proto::collector::metrics::v1::ExportMetricsServiceRequest;
use tidemark_proto::opentelemetry::proto::common::v1::{any_value, AnyValue, KeyValue};
use tidemark_proto::opentelemetry::proto::metrics::v1::{
    exponential_histogram_data_point::Buckets, metric, number_data_point,
    ExponentialHistogramDataPoint, HistogramDataPoint, NumberDataPoint, ScopeMetrics,
    SummaryDataPoint,
};

use crate::ingest::otlp::names::{
    label_name_with, metric_name_with, unit_name, NameKind, TranslationStrategy,
};
use crate::model::{
    format_float_f, CounterResetHint, Histogram, HistogramSample, HistogramValue, Labels,
    LabelsBuilder, Sample, Span, METRIC_NAME, STALE_NAN,
};
use crate::storage::{MetricMetadata, SeriesSamples};

/// OTLP's `AGGREGATION_TEMPORALITY_DELTA`.
const DELTA: i32 = 1;
/// OTLP's `DATA_POINT_FLAGS_NO_RECORDED_VALUE_MASK`.
const NO_RECORDED_VALUE: u32 = 1;
/// Highest native histogram schema; finer OTLP scales are merged down.
const MAX_SCHEMA: i32 = 8;
/// Lowest native histogram schema.
const MIN_SCHEMA: i32 = -4;
/// `target_info` is repeated this often between a resource's first and last
/// point (half the default lookback, as Prometheus).
const TARGET_INFO_STEP_MS: i64 = 150_000;

/// `service.*` attributes that make `job` and `instance`
/// (`identifyingAttrs`).
const IDENTIFYING: [&str; 3] = ["service.namespace", "service.name", "service.instance.id"];

/// Which resource attributes become labels of every point
/// (`PromoteResourceAttributes`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Promote {
    /// None (Prometheus's default).
    #[default]
    None,
    /// These, when present (`promote_resource_attributes`).
    Only(Vec<String>),
    /// All but these (`promote_all_resource_attributes` with
    /// `ignore_resource_attributes`).
    AllExcept(Vec<String>),
}

impl Promote {
    fn promotes(&self, key: &str) -> bool {
        match self {
            Promote::None => false,
            Promote::Only(keys) => keys.iter().any(|k| k == key),
            Promote::AllExcept(keys) => !keys.iter().any(|k| k == key),
        }
    }
}

/// How a request is translated: Prometheus 3's `otlp` settings and
/// feature flags. The default is Prometheus's default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TranslateOptions {
    /// `translation_strategy`.
    pub strategy: TranslationStrategy,
    /// `promote_resource_attributes` / `promote_all_resource_attributes`
    /// + `ignore_resource_attributes`.
    pub promote: Promote,
    /// `keep_identifying_resource_attributes`: `service.name`,
    /// `service.namespace` and `service.instance.id` also as labels of
    /// `target_info`.
    pub keep_identifying_resource_attributes: bool,
    /// `promote_scope_metadata`: `otel_scope_name`, `otel_scope_version`,
    /// `otel_scope_schema_url` and `otel_scope_<attribute>` on every point
    /// of a scope with a name.
    pub promote_scope_metadata: bool,
    /// `--enable-feature=otlp-native-delta-ingestion`: delta sums and
    /// histograms stored as they are, with metadata type `unknown`, start
    /// times ignored, exponential histograms as gauge histograms.
    pub native_delta_ingestion: bool,
    /// `--enable-created-timestamp-zero-ingestion`: start times of
    /// cumulative points as zero samples.
    pub created_zero: bool,
    /// Most `target_info` samples one resource may produce (one per 2.5
    /// minutes between its first and last point); past it the resource's
    /// `target_info` is skipped, so two points decades apart cannot make
    /// millions of samples. Set from `--max-write-samples-per-request`;
    /// default 1,000,000 (about 4.7 years of span).
    pub max_target_info_samples: usize,
}

impl Default for TranslateOptions {
    fn default() -> Self {
        Self {
            strategy: TranslationStrategy::default(),
            promote: Promote::default(),
            keep_identifying_resource_attributes: false,
            promote_scope_metadata: false,
            native_delta_ingestion: false,
            created_zero: false,
            max_target_info_samples: 1_000_000,
        }
    }
}

/// Why a data point was not stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Refusal {
    /// Delta temporality (Prometheus needs cumulative).
    Delta,
    /// A metric whose name translates to nothing.
    InvalidName,
    /// An exponential histogram scale below -4.
    ScaleTooLow,
    /// A point without a value, or a metric without data.
    Empty,
}

impl Refusal {
    /// The reason as a short stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Delta => "delta_temporality",
            Refusal::InvalidName => "invalid_name",
            Refusal::ScaleTooLow => "scale_too_low",
            Refusal::Empty => "empty",
        }
    }
}

/// The series and metadata of one request, and what was refused.
#[derive(Debug, Default)]
pub struct Translated {
    /// Series with their samples, one entry per label set.
    pub series: Vec<SeriesSamples>,
    /// Type, help and unit per metric family.
    pub metadata: Vec<MetricMetadata>,
    /// Data points accepted for storage.
    pub points: usize,
    /// Data points refused, by reason, with the first metric named.
    pub refused: BTreeMap<Refusal, (usize, String)>,
    /// Resources whose `target_info` was skipped: their points span more
    /// than [`TranslateOptions::max_target_info_samples`] steps.
    pub target_info_skipped: usize,
}

impl Translated {
    fn refuse(&mut self, why: Refusal, n: usize, metric: &str) {
        let e = self
            .refused
            .entry(why)
            .or_insert_with(|| (0, metric.to_string()));
        e.0 += n;
    }

    /// Data points refused in total.
    pub fn refused_points(&self) -> usize {
        self.refused.values().map(|(n, _)| n).sum()
    }
}

/// Collects samples per label set.
#[derive(Default)]
struct Sink {
    floats: BTreeMap<Labels, Vec<Sample>>,
    hists: BTreeMap<Labels, Vec<HistogramSample>>,
    /// Whether start times become created timestamps (zero samples).
    created_zero: bool,
    created: BTreeMap<Labels, Vec<i64>>,
}

impl Sink {
    /// Notes a point's start time `start` (ms) as the created timestamp of
    /// the sample at `t` of `labels`, when created-timestamp zero ingestion
    /// is on and the start time is set and older than `t` (Prometheus skips
    /// an unset start time and one equal to the sample's).
    fn created(&mut self, labels: &Labels, start: i64, t: i64) {
        if self.created_zero && start > 0 && start < t {
            self.created.entry(labels.clone()).or_default().push(start);
        }
    }

    /// A float sample of a cumulative series, with its start time.
    fn counter(&mut self, labels: Labels, start: i64, t: i64, v: f64) {
        self.created(&labels, start, t);
        self.float(labels, t, v);
    }

    /// The created timestamps of `labels`, ascending, without repeats.
    fn take_created(&mut self, labels: &Labels) -> Vec<i64> {
        let mut v = self.created.remove(labels).unwrap_or_default();
        v.sort_unstable();
        v.dedup();
        v
    }

    fn float(&mut self, labels: Labels, t: i64, v: f64) {
        self.floats
            .entry(labels)
            .or_default()
            .push(Sample::new(t, v));
    }
}

/// `AnyValue.AsString()` of pdata: strings as they are, numbers in Go's
/// shortest form, booleans `true`/`false`, arrays and maps as JSON.
fn value_string(v: &Option<AnyValue>) -> String {
    match v.as_ref().and_then(|v| v.value.as_ref()) {
        None => String::new(),
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        // An index into a profiles string table: meaningless for metrics.
        Some(any_value::Value::StringValueStrindex(_)) => String::new(),
        Some(any_value::Value::DoubleValue(d)) => format_float_f(*d),
        Some(any_value::Value::BytesValue(b)) => {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD.encode(b)
        }
        Some(any_value::Value::ArrayValue(a)) => {
            let items: Vec<String> = a
                .values
                .iter()
                .map(|v| serde_json::to_string(&value_string(&Some(v.clone()))).unwrap_or_default())
                .collect();
            format!("[{}]", items.join(","))
        }
        Some(any_value::Value::KvlistValue(kv)) => {
            let items: Vec<String> = kv
                .values
                .iter()
                .map(|p| {
                    format!(
                        "{}:{}",
                        serde_json::to_string(&p.key).unwrap_or_default(),
                        serde_json::to_string(&value_string(&p.value)).unwrap_or_default()
                    )
                })
                .collect();
            format!("{{{}}}", items.join(","))
        }
    }
}

fn attr<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a Option<AnyValue>> {
    attrs.iter().find(|kv| kv.key == key).map(|kv| &kv.value)
}

/// The labels a resource gives its points.
#[derive(Debug, Default)]
struct ResourceLabels {
    /// `job` and `instance`: override point attributes.
    identity: Vec<(String, String)>,
    /// Promoted resource attributes: only where a point has no such label.
    promoted: Vec<(String, String)>,
}

/// The labels shared by a resource's points: `job`, `instance` and the
/// promoted attributes (`setResourceContext`). A promoted attribute whose
/// name translates to nothing is skipped.
fn resource_labels(attrs: &[KeyValue], opts: &TranslateOptions) -> ResourceLabels {
    let mut promoted: BTreeMap<String, String> = BTreeMap::new();
    for kv in attrs.iter().filter(|kv| opts.promote.promotes(&kv.key)) {
        if let Some(name) = label_name_with(&kv.key, opts.strategy) {
            promoted.insert(name, value_string(&kv.value));
        }
    }
    ResourceLabels {
        identity: identity_labels(attrs),
        promoted: promoted.into_iter().collect(),
    }
}

/// `job` and `instance` from the `service.*` attributes.
fn identity_labels(attrs: &[KeyValue]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if let Some(name) = attr(attrs, "service.name") {
        let mut job = value_string(name);
        if let Some(ns) = attr(attrs, "service.namespace") {
            job = format!("{}/{job}", value_string(ns));
        }
        out.push(("job".to_string(), job));
    }
    if let Some(id) = attr(attrs, "service.instance.id") {
        out.push(("instance".to_string(), value_string(id)));
    }
    out
}

/// The labels of a point's context: its resource's and its scope's.
#[derive(Clone, Copy)]
struct Context<'a> {
    resource: &'a ResourceLabels,
    /// Scope labels (empty unless scope metadata is promoted).
    scope: &'a [(String, String)],
    strategy: TranslationStrategy,
}

/// The scope labels of `sm` when `promote_scope_metadata` is on and the
/// scope has a name (`setScopeContext`): `otel_scope_<attribute>`, then
/// `otel_scope_name`, `otel_scope_version`, `otel_scope_schema_url`
/// (empty values dropped later, as Prometheus's `labels.Builder` drops them).
fn scope_labels(sm: &ScopeMetrics, opts: &TranslateOptions) -> Vec<(String, String)> {
    let Some(scope) = sm
        .scope
        .as_ref()
        .filter(|s| opts.promote_scope_metadata && !s.name.is_empty())
    else {
        return Vec::new();
    };
    let mut out: Vec<(String, String)> = scope
        .attributes
        .iter()
        .filter_map(|kv| {
            label_name_with(&format!("otel_scope_{}", kv.key), opts.strategy)
                .map(|k| (k, value_string(&kv.value)))
        })
        .collect();
    out.push(("otel_scope_name".into(), scope.name.clone()));
    out.push(("otel_scope_version".into(), scope.version.clone()));
    out.push(("otel_scope_schema_url".into(), sm.schema_url.clone()));
    out
}

/// A point's label set (`createAttributes`): its attributes (translated;
/// values of keys that collide joined with `;` in key order, as
/// Prometheus), promoted resource attributes it lacks, the resource's
/// `job`/`instance`, the scope labels, `extra` (`le`, `quantile`) and
/// `__name__`.
fn point_labels(
    attrs: &[KeyValue],
    ctx: Context<'_>,
    name: &str,
    extra: Option<(&str, String)>,
) -> Option<Labels> {
    let mut sorted: Vec<&KeyValue> = attrs.iter().collect();
    sorted.sort_by(|a, b| a.key.cmp(&b.key));
    let mut m: BTreeMap<String, String> = BTreeMap::new();
    for kv in sorted {
        let Some(k) = label_name_with(&kv.key, ctx.strategy) else {
            continue;
        };
        let v = value_string(&kv.value);
        m.entry(k)
            .and_modify(|e| {
                e.push(';');
                e.push_str(&v);
            })
            .or_insert(v);
    }
    for (k, v) in &ctx.resource.promoted {
        match m.get_mut(k) {
            Some(e) if !e.is_empty() => {}
            Some(e) => e.clone_from(v),
            None => {
                m.insert(k.clone(), v.clone());
            }
        }
    }
    for (k, v) in ctx.resource.identity.iter().chain(ctx.scope) {
        m.insert(k.clone(), v.clone());
    }
    if let Some((k, v)) = extra {
        m.insert(k.to_string(), v);
    }
    m.insert(METRIC_NAME.to_string(), name.to_string());
    let mut b = LabelsBuilder::new();
    for (k, v) in &m {
        if !v.is_empty() {
            b.push(k, v);
        }
    }
    b.build().ok()
}

fn ms(nanos: u64) -> i64 {
    (nanos / 1_000_000).min(i64::MAX as u64) as i64
}

fn stale(flags: u32) -> bool {
    flags & NO_RECORDED_VALUE != 0
}

/// Translates a request with Prometheus's default settings.
pub fn translate(req: &ExportMetricsServiceRequest) -> Translated {
    translate_with(req, &TranslateOptions::default())
}

/// [`translate`] with `opts`; `opts.created_zero` says whether the start times of
/// cumulative sums, histograms and exponential histograms become created
/// timestamps ([`SeriesSamples::created`]: zero samples, as Prometheus 3
/// with created-timestamp zero ingestion): on every series of a classic
/// histogram (`_count`, `_sum`, `_bucket`), and as a zero native histogram
/// of the same schema for an exponential one.
pub fn translate_with(req: &ExportMetricsServiceRequest, opts: &TranslateOptions) -> Translated {
    let mut out = Translated::default();
    let mut sink = Sink {
        created_zero: opts.created_zero,
        ..Sink::default()
    };
    let mut families: BTreeMap<String, MetricMetadata> = BTreeMap::new();
    for rm in &req.resource_metrics {
        let attrs: &[KeyValue] = rm.resource.as_ref().map_or(&[], |r| &r.attributes);
        let resource = resource_labels(attrs, opts);
        let (mut first_t, mut last_t) = (i64::MAX, i64::MIN);
        for sm in &rm.scope_metrics {
            let scope = scope_labels(sm, opts);
            let context = Context {
                resource: &resource,
                scope: &scope,
                strategy: opts.strategy,
            };
            for m in &sm.metrics {
                let Some(data) = &m.data else {
                    out.refuse(Refusal::Empty, 1, &m.name);
                    continue;
                };
                let kind = match data {
                    metric::Data::Sum(s) if s.is_monotonic => NameKind::Counter,
                    metric::Data::Sum(_) => NameKind::UpDown,
                    metric::Data::Gauge(_) => NameKind::Gauge,
                    _ => NameKind::Other,
                };
                let Some(name) = metric_name_with(&m.name, &m.unit, kind, opts.strategy) else {
                    out.refuse(Refusal::InvalidName, points_of(data), &m.name);
                    continue;
                };
                let delta_ok = opts.native_delta_ingestion;
                let mut ctx = Ctx {
                    out: &mut out,
                    sink: &mut sink,
                    context,
                    delta: false,
                    name: &name,
                    first_t: &mut first_t,
                    last_t: &mut last_t,
                };
                let metric_type = match data {
                    metric::Data::Gauge(g) => {
                        ctx.numbers(&g.data_points, false);
                        "gauge"
                    }
                    // Deltas, when allowed, get type `unknown`
                    // (`otelMetricTypeToPromMetricType`).
                    metric::Data::Sum(s) => {
                        ctx.delta = s.aggregation_temporality == DELTA;
                        if ctx.delta && !delta_ok {
                            ctx.out.refuse(Refusal::Delta, s.data_points.len(), &m.name);
                            continue;
                        }
                        ctx.numbers(&s.data_points, true);
                        match (ctx.delta, s.is_monotonic) {
                            (true, _) => "unknown",
                            (false, true) => "counter",
                            (false, false) => "gauge",
                        }
                    }
                    metric::Data::Histogram(h) => {
                        ctx.delta = h.aggregation_temporality == DELTA;
                        if ctx.delta && !delta_ok {
                            ctx.out.refuse(Refusal::Delta, h.data_points.len(), &m.name);
                            continue;
                        }
                        for p in &h.data_points {
                            ctx.histogram(p);
                        }
                        if ctx.delta {
                            "unknown"
                        } else {
                            "histogram"
                        }
                    }
                    metric::Data::ExponentialHistogram(h) => {
                        ctx.delta = h.aggregation_temporality == DELTA;
                        if ctx.delta && !delta_ok {
                            ctx.out.refuse(Refusal::Delta, h.data_points.len(), &m.name);
                            continue;
                        }
                        for p in &h.data_points {
                            ctx.exponential(p, &m.name);
                        }
                        if ctx.delta {
                            "unknown"
                        } else {
                            "histogram"
                        }
                    }
                    metric::Data::Summary(s) => {
                        for p in &s.data_points {
                            ctx.summary(p);
                        }
                        "summary"
                    }
                };
                families.insert(
                    name.clone(),
                    MetricMetadata {
                        metric: name,
                        metric_type,
                        help: m.description.clone(),
                        unit: unit_name(&m.unit, opts.strategy),
                    },
                );
            }
        }
        // target_info (`addResourceTargetInfo`): only when the resource
        // has attributes besides the identifying ones and gives `job` or
        // `instance`; those attributes, the identifying ones too with
        // `keep_identifying_resource_attributes`; no promoted or scope labels.
        let identifying = |kv: &&KeyValue| IDENTIFYING.contains(&kv.key.as_str());
        let has_other = attrs.iter().any(|kv| !identifying(&kv));
        let info: Vec<KeyValue> = attrs
            .iter()
            .filter(|kv| opts.keep_identifying_resource_attributes || !identifying(kv))
            .cloned()
            .collect();
        let info_resource = ResourceLabels {
            identity: resource.identity.clone(),
            promoted: Vec::new(),
        };
        let info_context = Context {
            resource: &info_resource,
            scope: &[],
            strategy: opts.strategy,
        };
        if has_other && !resource.identity.is_empty() && first_t <= last_t {
            // Checked before any sample is made: the span is the client's.
            let steps =
                (i128::from(last_t) - i128::from(first_t)) / i128::from(TARGET_INFO_STEP_MS) + 1;
            let labels = point_labels(&info, info_context, "target_info", None);
            if steps > opts.max_target_info_samples as i128 {
                out.target_info_skipped += 1;
            } else if let Some(labels) = labels {
                let mut t = first_t;
                while t < last_t {
                    sink.float(labels.clone(), t, 1.0);
                    t = t.saturating_add(TARGET_INFO_STEP_MS);
                }
                sink.float(labels, last_t, 1.0);
            }
        }
    }
    out.metadata = families.into_values().collect();
    let floats = std::mem::take(&mut sink.floats);
    let mut hists = std::mem::take(&mut sink.hists);
    for (labels, mut samples) in floats {
        samples.sort_by_key(|s| s.t);
        let histograms = hists.remove(&labels).unwrap_or_default();
        out.series.push(SeriesSamples {
            created: sink.take_created(&labels),
            labels,
            samples,
            histograms,
        });
    }
    for (labels, mut histograms) in hists {
        histograms.sort_by_key(|h| h.t);
        out.series.push(SeriesSamples {
            created: sink.take_created(&labels),
            labels,
            samples: Vec::new(),
            histograms,
        });
    }
    out
}

fn points_of(data: &metric::Data) -> usize {
    match data {
        metric::Data::Gauge(g) => g.data_points.len(),
        metric::Data::Sum(s) => s.data_points.len(),
        metric::Data::Histogram(h) => h.data_points.len(),
        metric::Data::ExponentialHistogram(h) => h.data_points.len(),
        metric::Data::Summary(s) => s.data_points.len(),
    }
}

/// One metric's translation state.
struct Ctx<'a> {
    out: &'a mut Translated,
    sink: &'a mut Sink,
    context: Context<'a>,
    /// Delta temporality (allowed): start times ignored, exponential
    /// histograms marked as gauge histograms.
    delta: bool,
    name: &'a str,
    first_t: &'a mut i64,
    last_t: &'a mut i64,
}

impl Ctx<'_> {
    fn seen(&mut self, t: i64) {
        *self.first_t = (*self.first_t).min(t);
        *self.last_t = (*self.last_t).max(t);
        self.out.points += 1;
    }

    fn labels(
        &self,
        attrs: &[KeyValue],
        suffix: &str,
        extra: Option<(&str, String)>,
    ) -> Option<Labels> {
        point_labels(
            attrs,
            self.context,
            &format!("{}{suffix}", self.name),
            extra,
        )
    }

    /// Gauge or sum points; `cumulative` (a cumulative sum) notes their
    /// start times as created timestamps.
    fn numbers(&mut self, points: &[NumberDataPoint], cumulative: bool) {
        for p in points {
            let v = match (p.value, stale(p.flags)) {
                (_, true) => STALE_NAN,
                (Some(number_data_point::Value::AsDouble(v)), _) => v,
                (Some(number_data_point::Value::AsInt(i)), _) => i as f64,
                (None, _) => {
                    self.out.refuse(Refusal::Empty, 1, self.name);
                    continue;
                }
            };
            let Some(labels) = self.labels(&p.attributes, "", None) else {
                self.out.refuse(Refusal::InvalidName, 1, self.name);
                continue;
            };
            let t = ms(p.time_unix_nano);
            self.seen(t);
            if cumulative && !self.delta && !stale(p.flags) {
                self.sink.created(&labels, ms(p.start_time_unix_nano), t);
            }
            self.sink.float(labels, t, v);
        }
    }

    fn histogram(&mut self, p: &HistogramDataPoint) {
        let t = ms(p.time_unix_nano);
        let is_stale = stale(p.flags);
        let start = if is_stale || self.delta {
            0
        } else {
            ms(p.start_time_unix_nano)
        };
        let value = |v: f64| if is_stale { STALE_NAN } else { v };
        let mut emitted = false;
        if let Some(l) = self.labels(&p.attributes, "_count", None) {
            self.sink.counter(l, start, t, value(p.count as f64));
            emitted = true;
        }
        if let (Some(sum), Some(l)) = (p.sum, self.labels(&p.attributes, "_sum", None)) {
            self.sink.counter(l, start, t, value(sum));
        }
        let mut cumulative = 0u64;
        for (i, bound) in p.explicit_bounds.iter().enumerate() {
            cumulative = cumulative.saturating_add(p.bucket_counts.get(i).copied().unwrap_or(0));
            if let Some(l) = self.labels(
                &p.attributes,
                "_bucket",
                Some(("le", format_float_f(*bound))),
            ) {
                self.sink.counter(l, start, t, value(cumulative as f64));
            }
        }
        if let Some(l) = self.labels(&p.attributes, "_bucket", Some(("le", "+Inf".into()))) {
            self.sink.counter(l, start, t, value(p.count as f64));
        }
        if emitted {
            self.seen(t);
        }
    }

    fn summary(&mut self, p: &SummaryDataPoint) {
        let t = ms(p.time_unix_nano);
        let is_stale = stale(p.flags);
        let value = |v: f64| if is_stale { STALE_NAN } else { v };
        if let Some(l) = self.labels(&p.attributes, "_count", None) {
            self.sink.float(l, t, value(p.count as f64));
        }
        if let Some(l) = self.labels(&p.attributes, "_sum", None) {
            self.sink.float(l, t, value(p.sum));
        }
        for q in &p.quantile_values {
            if let Some(l) = self.labels(
                &p.attributes,
                "",
                Some(("quantile", format_float_f(q.quantile))),
            ) {
                self.sink.float(l, t, value(q.value));
            }
        }
        self.seen(t);
    }

    fn exponential(&mut self, p: &ExponentialHistogramDataPoint, metric: &str) {
        if p.scale < MIN_SCHEMA {
            self.out.refuse(Refusal::ScaleTooLow, 1, metric);
            return;
        }
        let Some(labels) = self.labels(&p.attributes, "", None) else {
            self.out.refuse(Refusal::InvalidName, 1, metric);
            return;
        };
        let t = ms(p.time_unix_nano);
        let schema = p.scale.min(MAX_SCHEMA);
        let down = (p.scale - schema) as u32;
        let (positive_spans, positive_buckets) = buckets(p.positive.as_ref(), down);
        let (negative_spans, negative_buckets) = buckets(p.negative.as_ref(), down);
        let h = Histogram {
            // Prometheus marks delta histograms as gauge histograms, "to
            // avoid unnecessary chunk cutting" (`histograms.go`).
            counter_reset_hint: if self.delta {
                CounterResetHint::Gauge
            } else {
                CounterResetHint::Unknown
            },
            schema,
            zero_threshold: p.zero_threshold,
            zero_count: p.zero_count,
            count: p.count,
            sum: if stale(p.flags) {
                STALE_NAN
            } else {
                p.sum.unwrap_or(0.0)
            },
            positive_spans,
            negative_spans,
            positive_buckets,
            negative_buckets,
            custom_values: Vec::new(),
        };
        self.seen(t);
        if !stale(p.flags) && !self.delta {
            self.sink.created(&labels, ms(p.start_time_unix_nano), t);
        }
        self.sink
            .hists
            .entry(labels)
            .or_default()
            .push(HistogramSample {
                t,
                h: HistogramValue::Int(h),
            });
    }
}

/// OTLP buckets (bucket `i` of offset `o` covers `(base^(o+i), base^(o+i+1)]`)
/// as native histogram spans and delta-encoded counts (index `o+i+1`),
/// merged `2^down` to one when the scale is finer than schema 8.
fn buckets(b: Option<&Buckets>, down: u32) -> (Vec<Span>, Vec<i64>) {
    let Some(b) = b else {
        return (Vec::new(), Vec::new());
    };
    // (Prometheus index, count), merged when downscaling.
    let mut merged: Vec<(i64, u64)> = Vec::new();
    for (i, &c) in b.bucket_counts.iter().enumerate() {
        let otel = i64::from(b.offset) + i as i64;
        // Downscaling merges OTLP indexes floor(idx / 2^down) before the +1.
        let idx = (otel >> down) + 1;
        match merged.last_mut() {
            Some((last, n)) if *last == idx => *n = n.saturating_add(c),
            _ => merged.push((idx, c)),
        }
    }
    let mut spans: Vec<Span> = Vec::new();
    let mut deltas = Vec::new();
    let (mut prev_idx, mut prev_count): (Option<i64>, i64) = (None, 0);
    for (idx, c) in merged.into_iter().filter(|&(_, c)| c > 0) {
        let c = i64::try_from(c).unwrap_or(i64::MAX);
        match prev_idx {
            Some(p) if idx == p + 1 => {
                if let Some(s) = spans.last_mut() {
                    s.length += 1;
                }
            }
            Some(p) => spans.push(Span {
                offset: i32::try_from(idx - p - 1).unwrap_or(i32::MAX),
                length: 1,
            }),
            None => spans.push(Span {
                offset: i32::try_from(idx).unwrap_or(i32::MAX),
                length: 1,
            }),
        }
        deltas.push(c - prev_count);
        prev_count = c;
        prev_idx = Some(idx);
    }
    (spans, deltas)
}

#[cfg(test)]
mod tests;
