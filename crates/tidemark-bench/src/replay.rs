//! Captured node_exporter scrapes (Prometheus text format 0.0.4) as a
//! workload: [`capture`] saves `count` scrapes of a `/metrics` URL as
//! `scrape-NNNN.prom`; [`hosts`] turns a directory of them into the series
//! of each target, every target replaying the same captures (values cycle;
//! counters keep growing by one lap's increase per lap so they stay
//! monotonic). Series present in only some captures are dropped, so every
//! series has a value at every scrape.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::error::{Error, Result};
use super::http::{Client, Url};
use super::workload::{MetricType, SeriesDef, Shape};

/// One parsed sample line: sorted labels (with `__name__`) and the value.
#[derive(Debug, Clone, PartialEq)]
pub struct ExpositionSample {
    /// Labels, sorted by name, `__name__` included.
    pub labels: Vec<(String, String)>,
    /// The value.
    pub value: f64,
}

/// A parsed scrape: samples, and the `# TYPE` of each family.
#[derive(Debug, Clone, Default)]
pub struct Exposition {
    /// Sample lines in file order.
    pub samples: Vec<ExpositionSample>,
    /// Family name → type word (`counter`, `gauge`, `histogram`, …).
    pub types: BTreeMap<String, String>,
}

/// Parses the Prometheus text format (`# HELP`/`# TYPE` comments, sample
/// lines `name{l="v",…} value [timestamp]`, escapes `\\`, `\"`, `\n`).
///
/// # Errors
/// [`Error::Exposition`] naming the line.
pub fn parse(path: &Path, text: &str) -> Result<Exposition> {
    let mut out = Exposition::default();
    for (n, line) in text.lines().enumerate() {
        let err = |reason| Error::Exposition {
            path: path.to_path_buf(),
            line: n + 1,
            reason,
        };
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix('#') {
            let mut w = rest.split_whitespace();
            if w.next() == Some("TYPE") {
                let (name, ty) = (
                    w.next().ok_or(err("TYPE without name"))?,
                    w.next().ok_or(err("TYPE without type"))?,
                );
                out.types.insert(name.to_string(), ty.to_string());
            }
            continue;
        }
        let name_end = line.find(['{', ' ', '\t']).ok_or(err("no value"))?;
        let mut labels = vec![("__name__".to_string(), line[..name_end].to_string())];
        let mut rest = &line[name_end..];
        if let Some(body) = rest.strip_prefix('{') {
            let mut chars = body.char_indices().peekable();
            let mut consumed = None;
            loop {
                // Skip separators.
                while chars.peek().is_some_and(|&(_, c)| c == ',' || c == ' ') {
                    chars.next();
                }
                match chars.peek() {
                    Some(&(i, '}')) => {
                        consumed = Some(i + 1);
                        break;
                    }
                    None => break,
                    _ => {}
                }
                let mut name = String::new();
                for (_, c) in chars.by_ref() {
                    if c == '=' {
                        break;
                    }
                    name.push(c);
                }
                if chars.next().map(|(_, c)| c) != Some('"') {
                    return Err(err("label value not quoted"));
                }
                let mut value = String::new();
                let mut closed = false;
                while let Some((_, c)) = chars.next() {
                    match c {
                        '"' => {
                            closed = true;
                            break;
                        }
                        '\\' => match chars.next().map(|(_, c)| c) {
                            Some('n') => value.push('\n'),
                            Some(c) => value.push(c),
                            None => return Err(err("dangling escape")),
                        },
                        c => value.push(c),
                    }
                }
                if !closed {
                    return Err(err("unterminated label value"));
                }
                labels.push((name.trim().to_string(), value));
            }
            let end = consumed.ok_or(err("unterminated label set"))?;
            rest = &body[end..];
        }
        let value_text = rest.split_whitespace().next().ok_or(err("no value"))?;
        let value = match value_text {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            "NaN" => f64::NAN,
            v => v.parse().map_err(|_| err("value is not a float"))?,
        };
        labels.sort();
        out.samples.push(ExpositionSample { labels, value });
    }
    Ok(out)
}

/// The family a sample belongs to (`_bucket`, `_sum`, `_count` stripped
/// when the stripped name has a histogram or summary TYPE).
fn family_type<'a>(types: &'a BTreeMap<String, String>, name: &str) -> Option<&'a str> {
    if let Some(t) = types.get(name) {
        return Some(t);
    }
    ["_bucket", "_sum", "_count", "_total"]
        .iter()
        .filter_map(|s| name.strip_suffix(s))
        .find_map(|base| types.get(base).map(String::as_str))
}

/// The series of one replayed host from the captures in `dir`
/// (`*.prom`, in name order). Labels `instance` and `job` are dropped
/// (the workload sets its own).
///
/// # Errors
/// [`Error::File`], [`Error::Exposition`], [`Error::NoCaptures`].
pub fn host(dir: &Path) -> Result<Vec<SeriesDef>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|source| Error::File {
            what: "read directory",
            path: dir.to_path_buf(),
            source,
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "prom"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(Error::NoCaptures {
            dir: dir.to_path_buf(),
        });
    }
    let mut scrapes = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).map_err(|source| Error::File {
            what: "read capture",
            path: f.clone(),
            source,
        })?;
        scrapes.push(parse(f, &text)?);
    }
    Ok(host_from(&scrapes))
}

/// As [`host`], from parsed scrapes.
pub fn host_from(scrapes: &[Exposition]) -> Vec<SeriesDef> {
    let mut values: BTreeMap<Vec<(String, String)>, Vec<f64>> = BTreeMap::new();
    for (k, s) in scrapes.iter().enumerate() {
        for x in &s.samples {
            let labels: Vec<_> = x
                .labels
                .iter()
                .filter(|(n, _)| n != "instance" && n != "job")
                .cloned()
                .collect();
            let v = values.entry(labels).or_default();
            if v.len() == k {
                v.push(x.value);
            }
        }
    }
    let types = scrapes.last().map(|s| s.types.clone()).unwrap_or_default();
    values
        .into_iter()
        .filter(|(_, v)| v.len() == scrapes.len())
        .map(|(labels, values)| {
            let name = &labels
                .iter()
                .find(|(n, _)| n == "__name__")
                .map_or("", |(_, v)| v.as_str());
            let ty = family_type(&types, name);
            let metric_type = match ty {
                Some("counter") => MetricType::Counter,
                Some("histogram") => MetricType::Histogram,
                _ => MetricType::Gauge,
            };
            let monotonic = matches!(ty, Some("counter"))
                || (matches!(ty, Some("histogram" | "summary"))
                    && !labels.iter().any(|(n, _)| n == "quantile"));
            let cycle_delta = match (monotonic, values.first(), values.last()) {
                (true, Some(a), Some(b)) if b >= a && values.len() > 1 => {
                    // One lap's increase plus one average step, so the value
                    // after the last capture is above it.
                    (b - a) + (b - a) / (values.len() - 1) as f64
                }
                _ => 0.0,
            };
            SeriesDef {
                labels,
                metric_type,
                shape: Shape::Replay {
                    values: Arc::from(values),
                    cycle_delta,
                },
            }
        })
        .collect()
}

/// Saves `count` scrapes of `url`, `every` apart, as
/// `dir/scrape-NNNN.prom`.
///
/// # Errors
/// [`Error::Url`], [`Error::Io`], [`Error::Api`] (non-200), [`Error::File`].
pub fn capture(url: &str, dir: &Path, count: usize, every: Duration) -> Result<()> {
    let url = Url::parse(url)?;
    std::fs::create_dir_all(dir).map_err(|source| Error::File {
        what: "create directory",
        path: dir.to_path_buf(),
        source,
    })?;
    let mut client = Client::new(&url, Duration::from_secs(30));
    for k in 0..count {
        let t0 = Instant::now();
        let r = client.get(&url.path)?;
        if r.status != 200 {
            return Err(Error::Api {
                system: url.authority.clone(),
                path: url.path.clone(),
                status: r.status,
                body: r.text().chars().take(200).collect(),
            });
        }
        let path = dir.join(format!("scrape-{k:04}.prom"));
        std::fs::write(&path, &r.body).map_err(|source| Error::File {
            what: "write capture",
            path,
            source,
        })?;
        if k + 1 < count {
            std::thread::sleep(every.saturating_sub(t0.elapsed()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCRAPE: &str = r#"# HELP node_cpu_seconds_total Seconds the CPUs spent in each mode.
# TYPE node_cpu_seconds_total counter
node_cpu_seconds_total{cpu="0",mode="idle"} 1234.5
node_cpu_seconds_total{cpu="0",mode="user"} 12.25
# TYPE node_load1 gauge
node_load1 0.42
# TYPE h histogram
h_bucket{le="0.1"} 3
h_bucket{le="+Inf"} 5
h_sum 0.7
h_count 5
odd{a="x\"y\\z",b="new\nline"} NaN 1700000000000
"#;

    #[test]
    fn parse_reads_labels_values_and_types() {
        let e = parse(Path::new("x"), SCRAPE).unwrap();
        assert_eq!(e.samples.len(), 8);
        assert_eq!(
            e.samples[0].labels[0],
            ("__name__".into(), "node_cpu_seconds_total".into())
        );
        assert_eq!(e.samples[1].value, 12.25);
        assert_eq!(e.samples[7].labels[1], ("a".into(), "x\"y\\z".into()));
        assert_eq!(e.samples[7].labels[2], ("b".into(), "new\nline".into()));
        assert!(e.samples[7].value.is_nan());
        assert_eq!(e.types["node_load1"], "gauge");
    }

    #[test]
    fn parse_bad_line_names_it() {
        let err = parse(Path::new("f"), "ok 1\nbad{a=1} 2\n").unwrap_err();
        assert_eq!(err.to_string(), "f:2: label value not quoted");
    }

    #[test]
    fn host_from_counters_keep_growing_across_laps() {
        let a = parse(Path::new("a"), SCRAPE).unwrap();
        let b = parse(
            Path::new("b"),
            &SCRAPE.replace("1234.5", "1240.5").replace("0.42", "0.5"),
        )
        .unwrap();
        let host = host_from(&[a, b]);
        assert_eq!(host.len(), 8);
        let idle = host
            .iter()
            .find(|s| s.labels.iter().any(|(_, v)| v == "idle"))
            .unwrap();
        assert_eq!(idle.metric_type, MetricType::Counter);
        let Shape::Replay { cycle_delta, .. } = idle.shape else {
            panic!("replay shape")
        };
        assert_eq!(cycle_delta, 12.0);
        let load = host.iter().find(|s| s.name() == "node_load1").unwrap();
        assert!(matches!(load.shape, Shape::Replay { cycle_delta, .. } if cycle_delta == 0.0));
    }
}
