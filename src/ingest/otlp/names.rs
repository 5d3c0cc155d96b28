//! OTLP metric and attribute names as Prometheus 3 translates them with
//! its default `UnderscoreEscapingWithSuffixes` strategy (the
//! `otlptranslator` library's `MetricNamer`, `UnitNamer` and `LabelNamer`
//! with UTF-8 off and suffixes on): names reduced to `[a-zA-Z0-9:_]`
//! tokens, the unit appended (`By` → `bytes`, `1/s` → `per_second`),
//! `_total` on monotonic counters, `_ratio` on gauges of unit `1`.
//!
//! Owns names only; values and label sets are `translate.rs`'s.

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

/// What kind of series a metric becomes, as far as its name cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameKind {
    /// A monotonic cumulative sum: `_total`.
    Counter,
    /// A gauge or non-monotonic sum: `_ratio` for unit `1`.
    Gauge,
    /// Histograms and summaries: unit only.
    Other,
}

fn metric_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == ':'
}

/// Prometheus's name for an OTLP metric (`normalizeName`). `None` when
/// nothing of the name is left (e.g. only punctuation).
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
}
