//! OTLP metric and attribute names as Prometheus 3 translates them, per
//! translation strategy (`otlp.translation_strategy`; the
//! `prometheus/otlptranslator` library's `MetricNamer`, `UnitNamer` and
//! `LabelNamer`, `strategy.go`, `metric_namer.go`, `label_namer.go` at
//! 51da77392288a9e499af0900c6cde6a8d769dc34). The default,
//! `UnderscoreEscapingWithSuffixes`, reduces names to `[a-zA-Z0-9:_]`
//! tokens, appends the unit (`By` → `bytes`, `1/s` → `per_second`),
//! `_total` on monotonic counters and `_ratio` on gauges of unit `1`.
//!
//! Owns names only; values and label sets are `translate.rs`'s.

use std::fmt;
use std::str::FromStr;

/// How metric and label names are translated: Prometheus 3's
/// `otlp.translation_strategy` values (`otlptranslator/strategy.go`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TranslationStrategy {
    /// Escape characters outside `[a-zA-Z0-9:_]` (metric) and
    /// `[a-zA-Z0-9_]` (label) to `_`; add unit and type suffixes. The default.
    #[default]
    UnderscoreEscapingWithSuffixes,
    /// Escape as above; add no unit or type suffix.
    UnderscoreEscapingWithoutSuffixes,
    /// Keep UTF-8 names as they are; add unit and type suffixes.
    NoUtf8EscapingWithSuffixes,
    /// Keep names as they are, no suffixes (Prometheus: experimental).
    NoTranslation,
}

impl TranslationStrategy {
    /// Every strategy, in Prometheus's spelling order.
    pub const ALL: [TranslationStrategy; 4] = [
        TranslationStrategy::UnderscoreEscapingWithSuffixes,
        TranslationStrategy::UnderscoreEscapingWithoutSuffixes,
        TranslationStrategy::NoUtf8EscapingWithSuffixes,
        TranslationStrategy::NoTranslation,
    ];

    /// Prometheus's name of the strategy.
    pub fn as_str(self) -> &'static str {
        match self {
            TranslationStrategy::UnderscoreEscapingWithSuffixes => "UnderscoreEscapingWithSuffixes",
            TranslationStrategy::UnderscoreEscapingWithoutSuffixes => {
                "UnderscoreEscapingWithoutSuffixes"
            }
            TranslationStrategy::NoUtf8EscapingWithSuffixes => "NoUTF8EscapingWithSuffixes",
            TranslationStrategy::NoTranslation => "NoTranslation",
        }
    }

    /// `ShouldEscape`: names are reduced to the legacy character set.
    pub fn escapes(self) -> bool {
        matches!(
            self,
            TranslationStrategy::UnderscoreEscapingWithSuffixes
                | TranslationStrategy::UnderscoreEscapingWithoutSuffixes
        )
    }

    /// `ShouldAddSuffixes`: unit, `_total` and `_ratio` suffixes.
    pub fn adds_suffixes(self) -> bool {
        matches!(
            self,
            TranslationStrategy::UnderscoreEscapingWithSuffixes
                | TranslationStrategy::NoUtf8EscapingWithSuffixes
        )
    }
}

impl fmt::Display for TranslationStrategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A strategy name that is none of Prometheus's four.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown OTLP translation strategy {0:?}: use UnderscoreEscapingWithSuffixes, UnderscoreEscapingWithoutSuffixes, NoUTF8EscapingWithSuffixes or NoTranslation")]
pub struct UnknownStrategy(pub String);

impl FromStr for TranslationStrategy {
    type Err = UnknownStrategy;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| UnknownStrategy(s.to_string()))
    }
}

/// OTLP unit → Prometheus unit word (`otlptranslator`'s `unitMap`).
const UNITS: [(&str, &str); 26] = [
    ("d", "days"),
    ("h", "hours"),
    ("min", "minutes"),
    ("s", "seconds"),
    ("ms", "milliseconds"),
    ("us", "microseconds"),
    ("ns", "nanoseconds"),
    ("By", "bytes"),
    ("KiBy", "kibibytes"),
    ("MiBy", "mebibytes"),
    ("GiBy", "gibibytes"),
    ("TiBy", "tibibytes"),
    ("KBy", "kilobytes"),
    ("MBy", "megabytes"),
    ("GBy", "gigabytes"),
    ("TBy", "terabytes"),
    ("m", "meters"),
    ("V", "volts"),
    ("A", "amperes"),
    ("J", "joules"),
    ("W", "watts"),
    ("g", "grams"),
    ("Cel", "celsius"),
    ("Hz", "hertz"),
    ("1", ""),
    ("%", "percent"),
];

/// OTLP "per" unit → Prometheus word (`perUnitMap`).
const PER_UNITS: [(&str, &str); 7] = [
    ("s", "second"),
    ("m", "minute"),
    ("h", "hour"),
    ("d", "day"),
    ("w", "week"),
    ("mo", "month"),
    ("y", "year"),
];

/// What kind of series a metric becomes, as far as its name cares
/// (`otlptranslator.MetricType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameKind {
    /// A monotonic sum (either temporality): `_total`.
    Counter,
    /// A gauge: `_ratio` for unit `1`.
    Gauge,
    /// A non-monotonic sum: unit only (Prometheus gives `_ratio` to
    /// `MetricTypeGauge` alone).
    UpDown,
    /// Histograms and summaries: unit only.
    Other,
}

fn metric_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == ':'
}

/// Prometheus's name for an OTLP metric under `strategy`
/// (`MetricNamer.Build`). `None` when nothing of the name is left (empty,
/// or only punctuation when escaping).
pub fn metric_name_with(
    name: &str,
    unit: &str,
    kind: NameKind,
    strategy: TranslationStrategy,
) -> Option<String> {
    let out = match (strategy.escapes(), strategy.adds_suffixes()) {
        (true, true) => return metric_name(name, unit, kind),
        (true, false) => escaped_without_suffixes(name),
        (false, true) => utf8_with_suffixes(name, unit, kind),
        (false, false) => name.to_string(),
    };
    // `buildCompliantMetricName`'s check: an escaped name must keep
    // something besides underscores; an unescaped one must not be empty.
    let invalid =
        out.is_empty() || (strategy.escapes() && out != name && out.bytes().all(|b| b == b'_'));
    (!invalid).then_some(out)
}

/// `buildCompliantMetricName` without suffixes: runs of characters outside
/// `[a-zA-Z0-9:_]` become one `_` (underscores kept as they are); a
/// leading digit gets `_`.
fn escaped_without_suffixes(name: &str) -> String {
    let mut out = name
        .split(|c: char| !metric_char(c) && c != '_')
        .filter(|t| !t.is_empty())
        .collect::<Vec<_>>()
        .join("_");
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out
}

/// `trimSuffixAndDelimiter`: `name` without `_suffix` (any one delimiter
/// character), when something is left before it.
fn trim_suffix_and_delimiter<'a>(name: &'a str, suffix: &str) -> &'a str {
    if name.ends_with(suffix) && name.len() > suffix.len() + 1 {
        let cut = name.len() - suffix.len() - 1;
        if name.is_char_boundary(cut) {
            return &name[..cut];
        }
    }
    name
}

/// `buildMetricName` with suffixes (UTF-8 allowed): the name as it is,
/// then the main unit unless already its suffix, the per unit, `_total`
/// for counters and `_ratio` for gauges of unit `1`, each moved to the
/// end when already present.
fn utf8_with_suffixes(name: &str, unit: &str, kind: NameKind) -> String {
    let ratio = unit == "1" && kind == NameKind::Gauge;
    let total = kind == NameKind::Counter;
    let mut base = name;
    if ratio {
        base = trim_suffix_and_delimiter(base, "ratio");
    }
    if total {
        base = trim_suffix_and_delimiter(base, "total");
    }
    let (main, per) = unit_suffixes(unit);
    if !per.is_empty() {
        base = trim_suffix_and_delimiter(base, &per);
    }
    let mut out = base.to_string();
    if !main.is_empty() && !out.ends_with(&main) {
        out.push('_');
        out.push_str(&main);
    }
    if !per.is_empty() {
        out.push('_');
        out.push_str(&per);
    }
    if total {
        out.push_str("_total");
    }
    if ratio {
        out.push_str("_ratio");
    }
    out
}

/// Prometheus's name for an OTLP metric with the default strategy
/// (`normalizeName`). `None` when nothing of the name is left (e.g. only
/// punctuation).
pub fn metric_name(name: &str, unit: &str, kind: NameKind) -> Option<String> {
    let mut tokens: Vec<String> = name
        .split(|c: char| !metric_char(c))
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .collect();
    let (main, per) = unit_suffixes(unit);
    let (main, per) = (clean_unit(&main), clean_unit(&per));
    let main = if tokens.contains(&main) {
        String::new()
    } else {
        main
    };
    let per = if per == "per_" {
        String::new()
    } else {
        let p = per.trim_end_matches('_').to_string();
        if tokens.contains(&p) {
            String::new()
        } else {
            p
        }
    };
    let main = if per.is_empty() {
        main
    } else {
        main.trim_end_matches('_').to_string()
    };
    if !main.is_empty() {
        tokens.push(main);
    }
    if !per.is_empty() {
        tokens.push(per);
    }
    match kind {
        NameKind::Counter => {
            tokens.retain(|t| t != "total");
            tokens.push("total".into());
        }
        NameKind::Gauge if unit == "1" => {
            tokens.retain(|t| t != "ratio");
            tokens.push("ratio".into());
        }
        _ => {}
    }
    let mut out = tokens.join("_");
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    (!out.is_empty() && !out.bytes().all(|b| b == b'_')).then_some(out)
}

/// `buildUnitSuffixes`: the main unit word and `per_<word>`.
fn unit_suffixes(unit: &str) -> (String, String) {
    let mut parts = unit.splitn(2, '/');
    let main = parts.next().unwrap_or("").trim();
    let main = if !main.is_empty() && !main.contains(['{', '}']) {
        UNITS
            .iter()
            .find(|(u, _)| *u == main)
            .map_or(main, |(_, p)| p)
            .to_string()
    } else {
        String::new()
    };
    let per = match parts.next().map(str::trim) {
        Some(p) if !p.is_empty() && !p.contains(['{', '}']) => {
            let word = PER_UNITS
                .iter()
                .find(|(u, _)| *u == p)
                .map_or(p, |(_, w)| w);
            format!("per_{word}")
        }
        _ => String::new(),
    };
    (main, per)
}

/// Prometheus's metadata unit for an OTLP unit under `strategy`
/// (otlptranslator's `UnitNamer.Build`, which Prometheus 3 stores as the
/// family's unit): the main unit word and `per_<word>` joined by `_`
/// (`ms` → `milliseconds`, `By/s` → `bytes_per_second`, `1` and units in
/// braces → empty), cleaned of characters outside `[a-zA-Z0-9:_]` when
/// the strategy escapes, without a leading or trailing `_`.
pub fn unit_name(unit: &str, strategy: TranslationStrategy) -> String {
    let (main, per) = unit_suffixes(unit);
    let (main, per) = if strategy.escapes() {
        (clean_unit(&main), clean_unit(&per))
    } else {
        (main, per)
    };
    let joined = match (main.is_empty(), per.is_empty()) {
        (false, false) => format!("{main}_{per}"),
        (false, true) => main,
        _ => per,
    };
    let u = joined.strip_prefix('_').unwrap_or(&joined);
    u.strip_suffix('_').unwrap_or(u).to_string()
}

/// `cleanUpUnit`: invalid characters to `_`, runs of `_` collapsed, no
/// leading `_`.
fn clean_unit(unit: &str) -> String {
    let mut out = String::with_capacity(unit.len());
    for c in unit.chars() {
        let c = if metric_char(c) { c } else { '_' };
        if c == '_' && out.ends_with('_') {
            continue;
        }
        out.push(c);
    }
    out.trim_start_matches('_').to_string()
}

/// Prometheus's label name for an OTLP attribute key under `strategy`
/// (`LabelNamer.Build`): as [`label_name`] when escaping; otherwise the
/// key as it is, `None` when empty or only underscores.
pub fn label_name_with(key: &str, strategy: TranslationStrategy) -> Option<String> {
    if strategy.escapes() {
        return label_name(key);
    }
    (!key.is_empty() && !key.bytes().all(|b| b == b'_')).then(|| key.to_string())
}

/// Prometheus's label name for an OTLP attribute key (`NormalizeLabel`):
/// characters outside `[a-zA-Z0-9_]` become `_`; a leading digit gets
/// `key_`, a single leading `_` gets `key`. `None` for an empty key or one
/// that is only underscores.
pub fn label_name(key: &str) -> Option<String> {
    if key.is_empty() {
        return None;
    }
    let mut out: String = key
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert_str(0, "key_");
    } else if out.starts_with('_') && !out.starts_with("__") {
        out.insert_str(0, "key");
    }
    (!out.bytes().all(|b| b == b'_')).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Cases from `otlptranslator`'s `metric_namer_test.go` (UTF-8 off,
    /// suffixes on).
    #[test]
    fn metric_names_as_prometheus_translates_them() {
        let cases = [
            ("requests", "", NameKind::Counter, "requests_total"),
            ("cpu_usage", "1", NameKind::Gauge, "cpu_usage_ratio"),
            ("requests", "1", NameKind::Counter, "requests_total"),
            ("memory_usage", "By", NameKind::Gauge, "memory_usage_bytes"),
            ("requests", "1/s", NameKind::Gauge, "requests_per_second"),
            (
                "throughput",
                "By/s",
                NameKind::Gauge,
                "throughput_bytes_per_second",
            ),
            ("requests_total", "", NameKind::Counter, "requests_total"),
            ("cpu_usage_ratio", "1", NameKind::Gauge, "cpu_usage_ratio"),
            (
                "response_time_seconds",
                "s",
                NameKind::Gauge,
                "response_time_seconds",
            ),
            ("metric", "{requests}", NameKind::Gauge, "metric"),
            ("metric", "By/{requests}", NameKind::Gauge, "metric_bytes"),
            (
                "http.server.duration",
                "ms",
                NameKind::Other,
                "http_server_duration_milliseconds",
            ),
            (
                "system.cpu.time",
                "s",
                NameKind::Counter,
                "system_cpu_time_seconds_total",
            ),
            ("foo--bar", "", NameKind::Gauge, "foo_bar"),
            (
                "2xx.responses",
                "",
                NameKind::Counter,
                "_2xx_responses_total",
            ),
            ("queue", "unknown", NameKind::Gauge, "queue_unknown"),
        ];
        for (name, unit, kind, want) in cases {
            assert_eq!(
                metric_name(name, unit, kind).as_deref(),
                Some(want),
                "{name} {unit}"
            );
        }
        assert_eq!(metric_name("...", "", NameKind::Gauge), None);
    }

    #[test]
    fn label_names_as_prometheus_translates_them() {
        for (key, want) in [
            ("service.name", Some("service_name")),
            ("http.status_code", Some("http_status_code")),
            ("0abc", Some("key_0abc")),
            ("_private", Some("key_private")),
            ("__reserved__", Some("__reserved__")),
            ("ünïcode", Some("key_n_code")),
            ("", None),
            ("...", None),
        ] {
            assert_eq!(label_name(key).as_deref(), want, "{key}");
        }
    }

    /// Cases from `otlptranslator`'s `metric_namer_test.go` (at
    /// 51da77392288a9e499af0900c6cde6a8d769dc34) for the other three
    /// strategies; `None` where it returns an error.
    #[test]
    fn metadata_units_as_prometheus_unit_namer_builds_them() {
        use TranslationStrategy::*;
        for (unit, want) in [
            ("ms", "milliseconds"),
            ("By", "bytes"),
            ("By/s", "bytes_per_second"),
            ("1/s", "per_second"),
            ("1", ""),
            ("%", "percent"),
            ("{request}", ""),
            ("", ""),
            ("widgets", "widgets"),
        ] {
            assert_eq!(
                unit_name(unit, UnderscoreEscapingWithSuffixes),
                want,
                "{unit}"
            );
        }
        // Escaping cleans what the metric-name alphabet lacks; UTF-8
        // strategies keep it.
        assert_eq!(unit_name("m³", UnderscoreEscapingWithSuffixes), "m");
        assert_eq!(unit_name("m³", NoUtf8EscapingWithSuffixes), "m³");
    }

    #[test]
    fn metric_names_per_strategy_as_prometheus_translates_them() {
        use TranslationStrategy::*;
        let cases: [(&str, &str, NameKind, TranslationStrategy, Option<&str>); 17] = [
            (
                "simple_metric",
                "",
                NameKind::Gauge,
                UnderscoreEscapingWithoutSuffixes,
                Some("simple_metric"),
            ),
            (
                "metric@with#special$chars",
                "",
                NameKind::Gauge,
                UnderscoreEscapingWithoutSuffixes,
                Some("metric_with_special_chars"),
            ),
            (
                "123metric",
                "",
                NameKind::Gauge,
                UnderscoreEscapingWithoutSuffixes,
                Some("_123metric"),
            ),
            (
                "metric@@##$$name",
                "",
                NameKind::Gauge,
                UnderscoreEscapingWithoutSuffixes,
                Some("metric_name"),
            ),
            (
                "@#$%",
                "",
                NameKind::Gauge,
                UnderscoreEscapingWithoutSuffixes,
                None,
            ),
            (
                "@_#_$_%",
                "",
                NameKind::Gauge,
                UnderscoreEscapingWithoutSuffixes,
                None,
            ),
            (
                "___",
                "",
                NameKind::Gauge,
                UnderscoreEscapingWithoutSuffixes,
                Some("___"),
            ),
            (
                "http.server.duration",
                "s",
                NameKind::Counter,
                UnderscoreEscapingWithoutSuffixes,
                Some("http_server_duration"),
            ),
            (
                "requests_total",
                "",
                NameKind::Counter,
                NoUtf8EscapingWithSuffixes,
                Some("requests_total"),
            ),
            (
                "cpu_usage_ratio",
                "1",
                NameKind::Gauge,
                NoUtf8EscapingWithSuffixes,
                Some("cpu_usage_ratio"),
            ),
            (
                "cpu_seconds_total",
                "s",
                NameKind::Counter,
                NoUtf8EscapingWithSuffixes,
                Some("cpu_seconds_total"),
            ),
            (
                "otelcol_process_cpu_seconds",
                "s",
                NameKind::Counter,
                NoUtf8EscapingWithSuffixes,
                Some("otelcol_process_cpu_seconds_total"),
            ),
            (
                "requêsts",
                "1/s",
                NameKind::Gauge,
                NoUtf8EscapingWithSuffixes,
                Some("requêsts_per_second"),
            ),
            (
                "respønse_time",
                "ms",
                NameKind::Gauge,
                NoUtf8EscapingWithSuffixes,
                Some("respønse_time_milliseconds"),
            ),
            (
                "@#$%",
                "",
                NameKind::Counter,
                NoUtf8EscapingWithSuffixes,
                Some("@#$%_total"),
            ),
            (
                "métric_with_ñ_chars",
                "",
                NameKind::Gauge,
                NoTranslation,
                Some("métric_with_ñ_chars"),
            ),
            (
                "http.server.duration",
                "s",
                NameKind::Counter,
                NoTranslation,
                Some("http.server.duration"),
            ),
        ];
        for (name, unit, kind, strategy, want) in cases {
            assert_eq!(
                metric_name_with(name, unit, kind, strategy).as_deref(),
                want,
                "{name} {unit} {strategy}"
            );
        }
        assert_eq!(
            metric_name_with("", "", NameKind::Gauge, NoTranslation),
            None
        );
    }

    /// `_ratio` is for gauges only: a non-monotonic sum of unit `1` keeps
    /// its name (`normalizeName`: `metricType == MetricTypeGauge`).
    #[test]
    fn up_down_counters_get_no_ratio_suffix() {
        assert_eq!(
            metric_name("queue.fill", "1", NameKind::UpDown).as_deref(),
            Some("queue_fill")
        );
        assert_eq!(
            metric_name("queue.fill", "1", NameKind::Gauge).as_deref(),
            Some("queue_fill_ratio")
        );
    }

    /// `LabelNamer.Build` with UTF-8 allowed: keys as they are, refused
    /// only when empty or all underscores.
    #[test]
    fn label_names_without_escaping_stay_as_they_are() {
        let s = TranslationStrategy::NoUtf8EscapingWithSuffixes;
        assert_eq!(
            label_name_with("http.method", s).as_deref(),
            Some("http.method")
        );
        assert_eq!(label_name_with("ünïcode", s).as_deref(), Some("ünïcode"));
        assert_eq!(label_name_with("__", s), None);
        assert_eq!(label_name_with("", s), None);
        let e = TranslationStrategy::UnderscoreEscapingWithoutSuffixes;
        assert_eq!(
            label_name_with("http.method", e).as_deref(),
            Some("http_method")
        );
    }

    #[test]
    fn strategies_parse_by_prometheus_name() {
        for s in TranslationStrategy::ALL {
            assert_eq!(s.as_str().parse::<TranslationStrategy>(), Ok(s));
        }
        assert!("underscore".parse::<TranslationStrategy>().is_err());
    }
}
