//! The semantic half of remote write: turns a decoded 1.0 or 2.0 request
//! into a storage batch, checking label rules per series and timestamps per
//! sample. Invalid series and samples are counted and named, never fatal:
//! the valid rest of the request is stored (a partial write).
//!
//! Label strings are converted once per request: a per-request cache maps
//! each distinct byte string to one shared `Arc<str>` (1.0), and each 2.0
//! symbol is converted once and then referenced by index.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::Arc;

use crate::ingest::error::Reason;
use crate::ingest::histogram;
use crate::ingest::limits::{Limit, WriteLimits};
use crate::ingest::proto::{prometheus, write_v2};
use crate::ingest::series_cache::{CacheSlot, SeriesCache};
use crate::ingest::wire::PlainV1;
use crate::model::{
    HistogramSample, HistogramValue, LabelError, Labels, LabelsBuilder, Sample, METRIC_NAME,
};
use crate::storage::{SeriesHandle, SeriesSamples};

/// How many offending series a partial-write answer names.
pub const MAX_OFFENDERS: usize = 5;

/// Longest text of an offender's series or detail in a partial-write
/// answer, in bytes; longer texts are cut (a client's 1 MB label value
/// does not come back five times in the answer).
pub const MAX_OFFENDER_TEXT: usize = 512;

/// `s` cut to at most [`MAX_OFFENDER_TEXT`] bytes on a character boundary.
fn cut(mut s: String) -> String {
    if s.len() > MAX_OFFENDER_TEXT {
        let mut end = MAX_OFFENDER_TEXT;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        let total = s.len();
        s.truncate(end);
        let _ = write!(s, "… ({total} bytes)");
    }
    s
}

pub use crate::storage::{ExemplarEntry, MetricMetadata};

/// One named offender for the error message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offender {
    /// The series in Prometheus text form (best effort for invalid labels).
    pub series: String,
    /// The reason.
    pub reason: Reason,
    /// What exactly was wrong.
    pub detail: String,
}

/// A request made ready for storage.
#[derive(Debug, Default)]
pub struct Prepared {
    /// Valid series with their in-window samples.
    pub batch: Vec<SeriesSamples>,
    /// Float samples in the request.
    pub samples_received: usize,
    /// Native histogram samples in the request.
    pub histograms_received: usize,
    /// Of those, rejected before storage (labels, time rules, structure).
    pub histograms_rejected: usize,
    /// Rejected samples by reason (before storage).
    pub rejected: BTreeMap<Reason, usize>,
    /// The first few offenders.
    pub offenders: Vec<Offender>,
    /// Metadata carried by the request.
    pub metadata: Vec<MetricMetadata>,
    /// Exemplars of valid series.
    pub exemplars: Vec<ExemplarEntry>,
    /// Per entry of `batch`: its place in the series cache, when prepared
    /// with one.
    pub slots: Vec<Option<CacheSlot>>,
}

impl Prepared {
    /// Records `count` rejected samples for one reason and names the series.
    pub fn reject(
        &mut self,
        series: impl FnOnce() -> String,
        reason: Reason,
        count: usize,
        detail: impl FnOnce() -> String,
    ) {
        if count == 0 {
            return;
        }
        *self.rejected.entry(reason).or_default() += count;
        if self.offenders.len() < MAX_OFFENDERS {
            self.offenders.push(Offender {
                series: cut(series()),
                reason,
                detail: cut(detail()),
            });
        }
    }
}

/// Rules applied while preparing.
#[derive(Debug, Clone, Copy)]
pub struct Rules {
    /// Samples later than this (ms) are refused as too far in the future.
    pub max_t: i64,
    /// The per-series and per-entry limits (label count and lengths,
    /// exemplar label length, metadata text length). The whole-request
    /// limits were checked before decoding.
    pub limits: WriteLimits,
    /// Whether samples' created (start) timestamps become zero samples
    /// (`--enable-created-timestamp-zero-ingestion`).
    pub created_zero: bool,
}

impl Rules {
    /// Rules with `max_t` and the default limits.
    pub const fn new(max_t: i64) -> Self {
        Self {
            max_t,
            limits: WriteLimits::DEFAULT,
            created_zero: false,
        }
    }
}

/// The detail of a per-series or per-entry limit violation.
fn over(limit: Limit, found: usize, max: usize) -> String {
    format!(
        "{found} {} is more than the limit of {max} (set by {})",
        limit.what(),
        limit.flag()
    )
}

/// Checks a series' raw labels against the per-series limits: count, then
/// each name's and value's length.
pub(crate) fn check_raw_labels<'a>(
    mut pairs: impl ExactSizeIterator<Item = (&'a [u8], &'a [u8])>,
    limits: &WriteLimits,
) -> Result<(), LabelProblem> {
    let n = pairs.len();
    if n > limits.max_labels_per_series {
        return Err(LabelProblem {
            reason: Reason::TooManyLabels,
            detail: over(Limit::LabelsPerSeries, n, limits.max_labels_per_series),
        });
    }
    pairs.try_for_each(|(name, value)| {
        if name.len() > limits.max_label_name_len {
            return Err(LabelProblem {
                reason: Reason::LabelNameTooLong,
                detail: over(
                    Limit::LabelNameLength,
                    name.len(),
                    limits.max_label_name_len,
                ),
            });
        }
        if value.len() > limits.max_label_value_len {
            return Err(LabelProblem {
                reason: Reason::LabelValueTooLong,
                detail: over(
                    Limit::LabelValueLength,
                    value.len(),
                    limits.max_label_value_len,
                ),
            });
        }
        Ok(())
    })
}

/// A label problem found while building a series' labels.
pub(crate) struct LabelProblem {
    pub(crate) reason: Reason,
    pub(crate) detail: String,
}

/// A label pair whose strings are `None` where the bytes were not UTF-8.
type StrPair = (Option<Arc<str>>, Option<Arc<str>>);

/// Converts each distinct byte string once per request.
#[derive(Default)]
struct StringCache<'a> {
    map: HashMap<&'a [u8], Arc<str>, ahash::RandomState>,
}

impl<'a> StringCache<'a> {
    fn get(&mut self, b: &'a [u8]) -> Option<Arc<str>> {
        if let Some(s) = self.map.get(b) {
            return Some(s.clone());
        }
        let s: Arc<str> = std::str::from_utf8(b).ok()?.into();
        self.map.insert(b, s.clone());
        Some(s)
    }
}

/// A series' labels: from `series` when its raw pairs were seen before,
/// else from `build` (and then cached, interned, if valid).
fn cached_or_built<'a, I>(
    series: Option<&SeriesCache>,
    raw: impl Fn() -> I,
    build: impl FnOnce() -> Result<Labels, LabelProblem>,
) -> Result<(Labels, Option<CacheSlot>), LabelProblem>
where
    I: ExactSizeIterator<Item = (&'a [u8], &'a [u8])>,
{
    let Some(c) = series else {
        return hit_or_built(None, None, build);
    };
    let key = c.key(raw());
    hit_or_built(Some((c, key)), c.get(key, raw()), build)
}

/// The labels of a series whose lookup of `key` in the cache found `hit`:
/// the cached ones, or else built (and interned; the receiver caches the
/// series once appended); without a cache (`lookup` `None`), built.
fn hit_or_built(
    lookup: Option<(&SeriesCache, u64)>,
    hit: Option<(Labels, Option<SeriesHandle>)>,
    build: impl FnOnce() -> Result<Labels, LabelProblem>,
) -> Result<(Labels, Option<CacheSlot>), LabelProblem> {
    let Some((c, key)) = lookup else {
        return build().map(|l| (l, None));
    };
    if let Some((l, series)) = hit {
        return Ok((l, Some(CacheSlot { key, series })));
    }
    build().map(|l| (c.intern(l), Some(CacheSlot { key, series: None })))
}

/// Builds validated labels from `(name, value)` string pairs, where `None`
/// marks a string that was not valid UTF-8.
fn build_labels(
    pairs: impl Iterator<Item = (Option<Arc<str>>, Option<Arc<str>>)>,
) -> Result<Labels, LabelProblem> {
    let mut b = LabelsBuilder::new();
    for (name, value) in pairs {
        let (Some(name), Some(value)) = (name, value) else {
            return Err(LabelProblem {
                reason: Reason::InvalidUtf8,
                detail: "label name or value is not valid UTF-8".into(),
            });
        };
        b.push_shared(name, value);
    }
    let labels = b.build().map_err(|e| LabelProblem {
        reason: match e {
            LabelError::DuplicateName { .. } => Reason::DuplicateLabelName,
            LabelError::EmptyName | LabelError::InvalidName { .. } => Reason::InvalidLabelName,
        },
        detail: e.to_string(),
    })?;
    if labels.metric_name().is_none() {
        return Err(LabelProblem {
            reason: Reason::MissingMetricName,
            detail: format!("series has no {METRIC_NAME} label"),
        });
    }
    Ok(labels)
}

/// Best-effort text of labels that failed validation.
fn describe_raw<'a>(pairs: impl Iterator<Item = (&'a [u8], &'a [u8])>) -> String {
    let mut s = String::from("{");
    for (i, (n, v)) in pairs.enumerate() {
        if i > 0 {
            s.push_str(", ");
        }
        let _ = write!(
            s,
            "{}={:?}",
            String::from_utf8_lossy(n),
            String::from_utf8_lossy(v)
        );
    }
    s.push('}');
    s
}

/// Adds a valid series to the batch with its float and histogram samples
/// that pass the time rules (and, for histograms, Prometheus's structural
/// rules), rejecting the rest.
fn push_series(
    out: &mut Prepared,
    (labels, slot): (Labels, Option<CacheSlot>),
    samples: impl Iterator<Item = Sample>,
    histograms: impl Iterator<Item = (i64, HistogramValue)>,
    created: Vec<i64>,
    rules: Rules,
) {
    let mut kept = Vec::with_capacity(samples.size_hint().0);
    let mut kept_h = Vec::new();
    let (mut future, mut first_future) = (0usize, 0);
    let (mut past, mut first_past) = (0usize, 0);
    let (mut hist_out_of_window, mut invalid) = (0usize, 0usize);
    let mut first_invalid = None;
    let mut window = |t: i64| -> bool {
        if t > rules.max_t {
            if future == 0 {
                first_future = t;
            }
            future += 1;
            false
        } else if t < 0 {
            if past == 0 {
                first_past = t;
            }
            past += 1;
            false
        } else {
            true
        }
    };
    for s in samples {
        if window(s.t) {
            kept.push(s);
        }
    }
    for (t, h) in histograms {
        if !window(t) {
            hist_out_of_window += 1;
            continue;
        }
        match h.validate() {
            Ok(()) => kept_h.push(HistogramSample { t, h }),
            Err(e) => {
                invalid += 1;
                first_invalid.get_or_insert((t, e));
            }
        }
    }
    out.histograms_rejected += hist_out_of_window + invalid;
    out.reject(
        || labels.to_string(),
        Reason::TooFarInFuture,
        future,
        || format!("timestamp {first_future} is more than 10 minutes in the future (latest accepted {})", rules.max_t),
    );
    out.reject(
        || labels.to_string(),
        Reason::BeforeEpoch,
        past,
        || format!("timestamp {first_past} is before 1970-01-01T00:00:00Z (earliest accepted 0)"),
    );
    if let Some((t, e)) = first_invalid {
        out.reject(
            || labels.to_string(),
            Reason::InvalidHistogram,
            invalid,
            || format!("histogram at timestamp {t}: {e}"),
        );
    }
    if !kept.is_empty() || !kept_h.is_empty() {
        out.batch.push(SeriesSamples {
            created,
            labels,
            samples: kept,
            histograms: kept_h,
        });
        out.slots.push(slot);
    }
}

fn metric_type_v1(t: i32) -> &'static str {
    use prometheus::metric_metadata::MetricType as T;
    match T::try_from(t).unwrap_or(T::Unknown) {
        T::Unknown => "unknown",
        T::Counter => "counter",
        T::Gauge => "gauge",
        T::Histogram => "histogram",
        T::Gaugehistogram => "gaugehistogram",
        T::Summary => "summary",
        T::Info => "info",
        T::Stateset => "stateset",
    }
}

fn metric_type_v2(t: i32) -> &'static str {
    use write_v2::metadata::MetricType as T;
    match T::try_from(t).unwrap_or(T::Unspecified) {
        T::Unspecified => "unknown",
        T::Counter => "counter",
        T::Gauge => "gauge",
        T::Histogram => "histogram",
        T::Gaugehistogram => "gaugehistogram",
        T::Summary => "summary",
        T::Info => "info",
        T::Stateset => "stateset",
    }
}

/// Prepares a remote write 1.0 request.
pub fn prepare_v1(req: &prometheus::WriteRequest, rules: Rules) -> Prepared {
    prepare_v1_inner(req, rules, None)
}

/// [`prepare_v1`] taking the labels of series seen before from `series`
/// (and adding new ones to it).
pub fn prepare_v1_cached(
    req: &prometheus::WriteRequest,
    rules: Rules,
    series: &SeriesCache,
) -> Prepared {
    prepare_v1_inner(req, rules, Some(series))
}

fn prepare_v1_inner(
    req: &prometheus::WriteRequest,
    rules: Rules,
    series: Option<&SeriesCache>,
) -> Prepared {
    prepare_v1_series(req.timeseries.iter(), &req.metadata, rules, series)
}

/// [`prepare_v1_cached`] for a request read by [`crate::ingest::wire`]:
/// the same outcome as for the prost message of the same bytes.
pub fn prepare_plain_v1_cached(req: &PlainV1<'_>, rules: Rules, series: &SeriesCache) -> Prepared {
    let view = req.series.iter().map(|s| PlainRef {
        labels: &req.labels[s.labels.clone()],
        samples: &req.samples[s.samples.clone()],
    });
    prepare_v1_series(view, &[], rules, Some(series))
}

/// What preparing reads of one 1.0 series: prost's message, or a series of
/// a request read by [`crate::ingest::wire`].
trait V1Series<'a> {
    fn raw_labels(&self) -> impl ExactSizeIterator<Item = (&'a [u8], &'a [u8])>;
    fn samples(&self) -> impl ExactSizeIterator<Item = Sample>;
    fn histograms(&self) -> &'a [prometheus::Histogram];
    fn exemplars(&self) -> &'a [prometheus::Exemplar];
}

impl<'a> V1Series<'a> for &'a prometheus::TimeSeries {
    fn raw_labels(&self) -> impl ExactSizeIterator<Item = (&'a [u8], &'a [u8])> {
        self.labels.iter().map(|l| (&l.name[..], &l.value[..]))
    }
    fn samples(&self) -> impl ExactSizeIterator<Item = Sample> {
        self.samples
            .iter()
            .map(|s| Sample::new(s.timestamp, s.value))
    }
    fn histograms(&self) -> &'a [prometheus::Histogram] {
        &self.histograms
    }
    fn exemplars(&self) -> &'a [prometheus::Exemplar] {
        &self.exemplars
    }
}

/// A series of a [`PlainV1`] request.
struct PlainRef<'a> {
    labels: &'a [(&'a [u8], &'a [u8])],
    samples: &'a [Sample],
}

impl<'a> V1Series<'a> for PlainRef<'a> {
    fn raw_labels(&self) -> impl ExactSizeIterator<Item = (&'a [u8], &'a [u8])> {
        self.labels.iter().copied()
    }
    fn samples(&self) -> impl ExactSizeIterator<Item = Sample> {
        self.samples.iter().copied()
    }
    fn histograms(&self) -> &'a [prometheus::Histogram] {
        &[]
    }
    fn exemplars(&self) -> &'a [prometheus::Exemplar] {
        &[]
    }
}

fn prepare_v1_series<'a, S: V1Series<'a>>(
    timeseries: impl Iterator<Item = S>,
    metadata: &'a [prometheus::MetricMetadata],
    rules: Rules,
    series: Option<&SeriesCache>,
) -> Prepared {
    // The batch is as long as the request, less invalid series (grown in
    // steps instead, it was copied about twice over).
    let timeseries: Vec<S> = timeseries.collect();
    let mut out = Prepared {
        batch: Vec::with_capacity(timeseries.len()),
        slots: Vec::with_capacity(timeseries.len()),
        ..Prepared::default()
    };
    // Every series is looked up in the cache before any is built: the
    // cache overlaps the lookups of a request ([`SeriesCache::get_many`]).
    let keys: Vec<u64> = match series {
        Some(c) => timeseries.iter().map(|ts| c.key(ts.raw_labels())).collect(),
        None => Vec::new(),
    };
    let mut hits = match series {
        Some(c) => c.get_many(&keys, |i| timeseries[i].raw_labels()),
        None => Vec::new(),
    }
    .into_iter();
    let mut cache = StringCache::default();
    for (i, ts) in timeseries.iter().enumerate() {
        let samples = ts.samples();
        out.samples_received += samples.len();
        out.histograms_received += ts.histograms().len();
        let build = || {
            check_raw_labels(ts.raw_labels(), &rules.limits)?;
            let pairs = ts.raw_labels().map(|(n, v)| (cache.get(n), cache.get(v)));
            build_labels(pairs.collect::<Vec<_>>().into_iter())
        };
        let lookup = series.zip(keys.get(i).copied());
        let built = hit_or_built(lookup, hits.next().flatten(), build);
        let (labels, slot) = match built {
            Ok(l) => l,
            Err(p) => {
                out.histograms_rejected += ts.histograms().len();
                out.reject(
                    || describe_raw(ts.raw_labels()),
                    p.reason,
                    samples.len() + ts.histograms().len(),
                    || p.detail,
                );
                continue;
            }
        };
        for e in ts.exemplars() {
            let pairs: Vec<_> = e
                .labels
                .iter()
                .map(|l| (cache.get(&l.name), cache.get(&l.value)))
                .collect();
            push_exemplar(&mut out, &labels, pairs, e.value, e.timestamp, rules);
        }
        let histograms = ts.histograms().iter().map(histogram::from_v1);
        push_series(
            &mut out,
            (labels, slot),
            samples,
            histograms,
            Vec::new(),
            rules,
        );
    }
    for m in metadata {
        let texts = [&m.metric_family_name, &m.help, &m.unit].map(|t| t.as_bytes());
        if let Err(detail) = check_metadata(texts, &rules.limits) {
            out.reject(
                || m.metric_family_name.clone(),
                Reason::MetadataTooLong,
                1,
                || detail,
            );
            continue;
        }
        out.metadata.push(MetricMetadata {
            metric: m.metric_family_name.clone(),
            metric_type: metric_type_v1(m.r#type),
            help: m.help.clone(),
            unit: m.unit.clone(),
        });
    }
    out
}

/// Checks a metadata entry's `[family name, help, unit]` lengths.
pub(crate) fn check_metadata(
    [name, help, unit]: [&[u8]; 3],
    limits: &WriteLimits,
) -> Result<(), String> {
    if name.len() > limits.max_label_value_len {
        return Err(format!(
            "metric family name: {}",
            over(
                Limit::LabelValueLength,
                name.len(),
                limits.max_label_value_len
            )
        ));
    }
    for (what, text) in [("help", help), ("unit", unit)] {
        if text.len() > limits.max_metadata_text_len {
            return Err(format!(
                "{what}: {}",
                over(
                    Limit::MetadataTextLength,
                    text.len(),
                    limits.max_metadata_text_len
                )
            ));
        }
    }
    Ok(())
}

/// Keeps an exemplar of `series` whose labels are valid (they may be empty
/// and need no `__name__`); drops it otherwise, naming it in the answer
/// when its labels are over the length limit.
fn push_exemplar(
    out: &mut Prepared,
    series: &Labels,
    pairs: Vec<StrPair>,
    value: f64,
    t: i64,
    rules: Rules,
) {
    let max = rules.limits.max_exemplar_labels_len;
    let mut chars = 0usize;
    for s in pairs.iter().flat_map(|(n, v)| [n, v]).flatten() {
        chars = chars.saturating_add(s.chars().count());
    }
    if chars > max {
        out.reject(
            || series.to_string(),
            Reason::ExemplarLabelsTooLong,
            1,
            || over(Limit::ExemplarLabelsLength, chars, max),
        );
        return;
    }
    if let Ok(labels) = exemplar_labels(pairs) {
        out.exemplars.push(ExemplarEntry {
            series: series.clone(),
            labels,
            value,
            t,
        });
    }
}

/// Exemplar labels may be empty and need no `__name__`.
fn exemplar_labels(pairs: Vec<StrPair>) -> Result<Labels, ()> {
    let mut b = LabelsBuilder::new();
    for (n, v) in pairs {
        b.push_shared(n.ok_or(())?, v.ok_or(())?);
    }
    b.build().map_err(|_| ())
}

/// Prepares a remote write 2.0 request: symbols are converted once and
/// label references resolved by index.
pub fn prepare_v2(req: &write_v2::Request, rules: Rules) -> Prepared {
    prepare_v2_inner(req, rules, None)
}

/// [`prepare_v2`] taking the labels of series seen before from `series`
/// (and adding new ones to it).
pub fn prepare_v2_cached(req: &write_v2::Request, rules: Rules, series: &SeriesCache) -> Prepared {
    prepare_v2_inner(req, rules, Some(series))
}

fn prepare_v2_inner(
    req: &write_v2::Request,
    rules: Rules,
    series: Option<&SeriesCache>,
) -> Prepared {
    let mut out = Prepared::default();
    let symbols: Vec<Option<Arc<str>>> = req
        .symbols
        .iter()
        .map(|s| std::str::from_utf8(s).ok().map(Arc::from))
        .collect();
    let sym =
        |r: u32| -> Result<Option<Arc<str>>, u32> { symbols.get(r as usize).cloned().ok_or(r) };
    let describe = |refs: &[u32]| {
        describe_raw(refs.chunks(2).map(|p| {
            let get = |r: Option<&u32>| {
                r.and_then(|&r| req.symbols.get(r as usize))
                    .map_or(&b"?"[..], |s| &s[..])
            };
            (get(p.first()), get(p.get(1)))
        }))
    };
    for ts in &req.timeseries {
        out.samples_received += ts.samples.len();
        out.histograms_received += ts.histograms.len();
        let count = ts.samples.len() + ts.histograms.len();
        // Every early rejection below rejects the whole series; undone
        // once the series is accepted.
        out.histograms_rejected += ts.histograms.len();
        let refs = &ts.labels_refs;
        let max_labels = rules.limits.max_labels_per_series;
        if refs.len() / 2 > max_labels {
            out.reject(
                || describe(&refs[..refs.len().min(2 * 16)]),
                Reason::TooManyLabels,
                count,
                || over(Limit::LabelsPerSeries, refs.len() / 2, max_labels),
            );
            continue;
        }
        if refs.len() % 2 != 0 {
            out.reject(
                || describe(refs),
                Reason::InvalidSymbolRef,
                count,
                || format!("labels_refs has odd length {}", refs.len()),
            );
            continue;
        }
        let resolved: Result<Vec<_>, u32> = refs
            .chunks(2)
            .map(|p| Ok((sym(p[0])?, sym(p[1])?)))
            .collect();
        let pairs = match resolved {
            Ok(p) => p,
            Err(bad) => {
                out.reject(
                    || describe(refs),
                    Reason::InvalidSymbolRef,
                    count,
                    || {
                        format!(
                            "symbol reference {bad} is out of range (table has {} symbols)",
                            symbols.len()
                        )
                    },
                );
                continue;
            }
        };
        let raw = || {
            let raw_sym = |r: u32| req.symbols.get(r as usize).map_or(&[][..], |s| &s[..]);
            refs.chunks(2).map(move |p| (raw_sym(p[0]), raw_sym(p[1])))
        };
        let build = || {
            check_raw_labels(raw(), &rules.limits)?;
            build_labels(pairs.into_iter())
        };
        let (labels, slot) = match cached_or_built(series, raw, build) {
            Ok(l) => l,
            Err(p) => {
                out.reject(|| describe(refs), p.reason, count, || p.detail);
                continue;
            }
        };
        out.histograms_rejected -= ts.histograms.len();
        if let Some(m) = &ts.metadata {
            let raw_sym = |r: u32| req.symbols.get(r as usize).map_or(&[][..], |s| &s[..]);
            let name = labels.metric_name().unwrap_or("").as_bytes();
            let texts = [name, raw_sym(m.help_ref), raw_sym(m.unit_ref)];
            let checked = check_metadata(texts, &rules.limits);
            let text = |r: u32| {
                sym(r)
                    .ok()
                    .flatten()
                    .map(|s| s.to_string())
                    .unwrap_or_default()
            };
            if let Err(detail) = checked {
                out.reject(|| labels.to_string(), Reason::MetadataTooLong, 1, || detail);
            } else if let Some(name) = labels.metric_name() {
                out.metadata.push(MetricMetadata {
                    metric: name.to_string(),
                    metric_type: metric_type_v2(m.r#type),
                    help: text(m.help_ref),
                    unit: text(m.unit_ref),
                });
            }
        }
        for e in &ts.exemplars {
            if e.labels_refs.len() % 2 != 0 {
                continue;
            }
            let pairs: Result<Vec<_>, u32> = e
                .labels_refs
                .chunks(2)
                .map(|p| Ok((sym(p[0])?, sym(p[1])?)))
                .collect();
            if let Ok(pairs) = pairs {
                push_exemplar(&mut out, &labels, pairs, e.value, e.timestamp, rules);
            }
        }
        push_series(
            &mut out,
            (labels, slot),
            ts.samples.iter().map(|s| Sample::new(s.timestamp, s.value)),
            ts.histograms.iter().map(histogram::from_v2),
            created_v2(ts, rules),
            rules,
        );
    }
    out
}

/// The created (start) timestamps of a remote write 2.0 series' samples
/// (`start_timestamp`, or the series' `created_timestamp`) that can make a
/// zero sample, when the rules ask for them: set (not 0), older than their
/// own sample and within the time window; ascending, without repeats (one
/// counter lifetime gives the same one to every sample, and only the first
/// can store a zero).
fn created_v2(ts: &write_v2::TimeSeries, rules: Rules) -> Vec<i64> {
    if !rules.created_zero {
        return Vec::new();
    }
    // A sample's own start timestamp, else the series' created timestamp
    // of the earlier 2.0 draft (applied to every sample, as Prometheus's
    // handler did: only the first can store a zero, or one between samples
    // when it is newer than the first).
    let or_series = |st: i64| if st != 0 { st } else { ts.created_timestamp };
    let pairs = ts
        .samples
        .iter()
        .map(|s| (or_series(s.start_timestamp), s.timestamp))
        .chain(
            ts.histograms
                .iter()
                .map(|h| (or_series(h.start_timestamp), h.timestamp)),
        );
    let mut out: Vec<i64> = pairs
        .filter(|&(ct, t)| ct > 0 && ct < t && t <= rules.max_t)
        .map(|(ct, _)| ct)
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn request(series: &[&[(&str, &str)]]) -> prometheus::WriteRequest {
        prometheus::WriteRequest {
            timeseries: series
                .iter()
                .enumerate()
                .map(|(i, labels)| prometheus::TimeSeries {
                    labels: labels
                        .iter()
                        .map(|(n, v)| prometheus::Label {
                            name: Bytes::copy_from_slice(n.as_bytes()),
                            value: Bytes::copy_from_slice(v.as_bytes()),
                        })
                        .collect(),
                    samples: vec![prometheus::Sample {
                        value: i as f64,
                        timestamp: 1000,
                    }],
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }

    const RULES: Rules = Rules::new(i64::MAX);

    /// With the series cache, the same request prepares to the same batch
    /// and rejections, the first time (cache filled) and every time after
    /// (labels from the cache), as without it; invalid series are never
    /// cached.
    #[test]
    fn cached_preparation_equals_uncached() {
        let req = request(&[
            &[("__name__", "up"), ("job", "a")],
            &[("job", "b"), ("__name__", "up")],
            &[("__name__", "up"), ("empty", ""), ("job", "c")],
            &[("job", "no name")],
            &[("__name__", "up"), ("job", "a"), ("job", "dup")],
        ]);
        let plain = prepare_v1(&req, RULES);
        let cache = SeriesCache::new(1000);
        for round in 0..3 {
            let cached = prepare_v1_cached(&req, RULES, &cache);
            assert_eq!(cached.batch, plain.batch, "round {round}");
            assert_eq!(cached.rejected, plain.rejected, "round {round}");
            // From the second round on, the one series sent as its labels
            // are (sorted, no empty value) is a hit carrying its series.
            let hits = cached.slots.iter().flatten().filter(|s| s.series.is_some());
            assert_eq!(hits.count(), usize::from(round > 0), "round {round}");
            // As the receiver does once the batch is appended.
            for (slot, entry) in cached.slots.iter().zip(&cached.batch) {
                if let Some(slot) = slot {
                    let series = SeriesHandle::detached(entry.labels.clone());
                    cache.set_series(slot.key, series);
                }
            }
            assert_eq!(cache.len(), 3, "round {round}");
        }
        // Sorted labels, as senders send them, come from the cache.
        let key = cache.key(
            req.timeseries[0]
                .labels
                .iter()
                .map(|l| (&l.name[..], &l.value[..])),
        );
        let raw = req.timeseries[0]
            .labels
            .iter()
            .map(|l| (&l.name[..], &l.value[..]));
        assert_eq!(
            cache.get(key, raw).map(|(l, _)| l).as_ref(),
            Some(&plain.batch[0].labels)
        );
    }
}

#[cfg(test)]
mod created_tests {
    use bytes::Bytes;

    use super::*;

    /// One series `m` with samples `(t, start_timestamp)` and the series'
    /// `created_timestamp`.
    fn req(samples: &[(i64, i64)], series_ct: i64) -> write_v2::Request {
        write_v2::Request {
            symbols: ["", "__name__", "m"]
                .into_iter()
                .map(|s| Bytes::from_static(s.as_bytes()))
                .collect(),
            timeseries: vec![write_v2::TimeSeries {
                labels_refs: vec![1, 2],
                samples: samples
                    .iter()
                    .map(|&(t, st)| write_v2::Sample {
                        value: 1.0,
                        timestamp: t,
                        start_timestamp: st,
                    })
                    .collect(),
                created_timestamp: series_ct,
                ..Default::default()
            }],
        }
    }

    #[test]
    fn created_timestamps_only_with_the_flag_and_only_usable_ones() {
        let on = Rules {
            created_zero: true,
            ..Rules::new(10_000)
        };
        let created = |r: &write_v2::Request, rules| prepare_v2(r, rules).batch[0].created.clone();
        // Unset (0), equal to or newer than the sample, and a sample past
        // the future limit give nothing; repeats collapse.
        let r = req(
            &[
                (100, 0),
                (200, 200),
                (300, 400),
                (400, 150),
                (500, 150),
                (20_000, 600),
            ],
            0,
        );
        assert_eq!(created(&r, on), [150]);
        assert!(created(&r, Rules::new(10_000)).is_empty());
        // The series-level field stands in for unset sample fields.
        let r = req(&[(100, 0), (200, 50)], 90);
        assert_eq!(created(&r, on), [50, 90]);
        assert!(created(&r, Rules::new(10_000)).is_empty());
    }
}
