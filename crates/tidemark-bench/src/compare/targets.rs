//! Issue 21's targets read off one run: each target is a ratio of a
//! Tidemark figure to the same VictoriaMetrics figure with a bound
//! (`<= 0.5x`, `>= 2.0x`), printed as a Markdown table with met / missed,
//! plus every query whose median is more than 1.2x VictoriaMetrics'.
//! Works on plain numbers ([`Figures`]) only: how they are measured is
//! `compare`'s business, not this module's.

use std::fmt::Write as _;

/// A query is listed as slow above this ratio of medians.
pub const SLOW_QUERY_RATIO: f64 = 1.2;

/// The figures of one system that the targets compare.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Figures {
    /// Data directory bytes: (a) peak during ingest, (b) end of ingest,
    /// (c) after persist, (d) after a clean shutdown, (e) after kill -9.
    pub disk: [Option<u64>; 5],
    /// Persisted index + chunk bytes per sample.
    pub persisted_bytes_per_sample: Option<f64>,
    /// Peak RSS over ingest and the query phase, bytes.
    pub peak_rss: Option<u64>,
    /// Peak RSS during ingest, bytes.
    pub peak_ingest_rss: Option<u64>,
    /// Acknowledged samples per server CPU-second of ingest.
    pub samples_per_cpu_s: Option<f64>,
    /// Median latency (ms) per query, in the report's query order; `None`
    /// where the query failed.
    pub query_medians_ms: Vec<Option<f64>>,
    /// Restart: start to ready with the data in place, seconds.
    pub restart_s: Option<f64>,
}

/// Which way a target bounds the ratio.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Goal {
    AtMost(f64),
    AtLeast(f64),
}

impl Goal {
    fn met(self, ratio: f64) -> bool {
        match self {
            Goal::AtMost(b) => ratio <= b,
            Goal::AtLeast(b) => ratio >= b,
        }
    }

    fn text(self) -> String {
        match self {
            Goal::AtMost(b) => format!("<= {b:.1}x"),
            Goal::AtLeast(b) => format!(">= {b:.1}x"),
        }
    }
}

const DISK: [&str; 5] = [
    "disk (a): peak during ingest (MiB)",
    "disk (b): end of ingest, before persist (MiB)",
    "disk (c): after persist (MiB)",
    "disk (d): after clean shutdown (MiB)",
    "disk (e): after kill -9 of the restarted process (MiB)",
];

fn mib(b: u64) -> f64 {
    b as f64 / f64::from(1 << 20)
}

/// Geometric mean of positive values (`None` when empty).
pub fn geomean(values: &[f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    Some((values.iter().map(|v| v.max(1e-9).ln()).sum::<f64>() / values.len() as f64).exp())
}

/// The targets section: a heading, the table and the slow queries.
/// `query_names` names the entries of [`Figures::query_medians_ms`].
/// Without VictoriaMetrics (or Tidemark) figures it says so instead.
pub fn section(
    tidemark: Option<&Figures>,
    victoriametrics: Option<&Figures>,
    query_names: &[String],
) -> String {
    let mut out = String::from("## Issue 21 targets (Tidemark / VictoriaMetrics)\n\n");
    let (t, v) = match (tidemark, victoriametrics) {
        (Some(t), Some(v)) => (t, v),
        (_, None) => {
            out.push_str("VictoriaMetrics was not run: no ratios to read the targets off.\n\n");
            return out;
        }
        (None, _) => {
            out.push_str("Tidemark was not run: no ratios to read the targets off.\n\n");
            return out;
        }
    };
    out.push_str("| target | Tidemark | VictoriaMetrics | ratio | goal | verdict |\n");
    out.push_str("| --- | --- | --- | --- | --- | --- |\n");
    let (mut met, mut judged) = (0, 0);
    let mut row = |name: &str, a: Option<f64>, b: Option<f64>, digits: usize, goal: Goal| {
        let cell = |x: Option<f64>| x.map_or("n/a".to_string(), |x| format!("{x:.digits$}"));
        let ratio = match (a, b) {
            (Some(a), Some(b)) if b > 0.0 && a.is_finite() && b.is_finite() => Some(a / b),
            _ => None,
        };
        let verdict = match ratio {
            Some(r) => {
                judged += 1;
                if goal.met(r) {
                    met += 1;
                    "met"
                } else {
                    "**missed**"
                }
            }
            None => "n/a",
        };
        let _ = writeln!(
            out,
            "| {name} | {} | {} | {} | {} | {verdict} |",
            cell(a),
            cell(b),
            ratio.map_or("n/a".to_string(), |r| format!("{r:.2}x")),
            goal.text(),
        );
    };
    for (i, name) in DISK.iter().enumerate() {
        row(
            name,
            t.disk[i].map(mib),
            v.disk[i].map(mib),
            2,
            Goal::AtMost(1.0),
        );
    }
    row(
        "persisted bytes per sample (index + chunks)",
        t.persisted_bytes_per_sample,
        v.persisted_bytes_per_sample,
        3,
        Goal::AtMost(0.5),
    );
    row(
        "peak RSS over ingest + queries (MiB)",
        t.peak_rss.map(mib),
        v.peak_rss.map(mib),
        1,
        Goal::AtMost(1.0),
    );
    row(
        "peak RSS during ingest (MiB)",
        t.peak_ingest_rss.map(mib),
        v.peak_ingest_rss.map(mib),
        1,
        Goal::AtMost(0.5),
    );
    row(
        "samples per server CPU-second",
        t.samples_per_cpu_s,
        v.samples_per_cpu_s,
        0,
        Goal::AtLeast(2.0),
    );
    // Geomeans over the queries both answered, so they cover one set.
    let pairs: Vec<(usize, f64, f64)> = (0..query_names.len())
        .filter_map(|i| {
            let a = t.query_medians_ms.get(i).copied().flatten()?;
            let b = v.query_medians_ms.get(i).copied().flatten()?;
            Some((i, a, b))
        })
        .collect();
    let ta: Vec<f64> = pairs.iter().map(|p| p.1).collect();
    let vb: Vec<f64> = pairs.iter().map(|p| p.2).collect();
    row(
        &format!(
            "query latency, geomean of medians (ms, {} queries both answered)",
            pairs.len()
        ),
        geomean(&ta),
        geomean(&vb),
        2,
        Goal::AtMost(0.5),
    );
    row(
        "restart: start to ready, data in place (s)",
        t.restart_s,
        v.restart_s,
        3,
        Goal::AtMost(0.5),
    );
    let _ = writeln!(
        out,
        "\nMet {met} of {judged} targets with figures on both sides."
    );
    let mut slow: Vec<(usize, f64, f64)> = pairs
        .into_iter()
        .filter(|&(_, a, b)| a > b * SLOW_QUERY_RATIO)
        .collect();
    slow.sort_by(|x, y| (y.1 / y.2.max(1e-9)).total_cmp(&(x.1 / x.2.max(1e-9))));
    if slow.is_empty() {
        let _ = writeln!(
            out,
            "\nNo query is slower than {SLOW_QUERY_RATIO}x VictoriaMetrics (medians)."
        );
    } else {
        let _ = writeln!(
            out,
            "\nQueries slower than {SLOW_QUERY_RATIO}x VictoriaMetrics (medians, Tidemark vs VictoriaMetrics; slowest first):\n"
        );
        for (i, a, b) in slow {
            let _ = writeln!(
                out,
                "- `{}`: {a:.2} vs {b:.2} ms ({:.2}x)",
                query_names[i],
                a / b.max(1e-9)
            );
        }
    }
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    fn vm() -> Figures {
        Figures {
            disk: [
                Some(100 * MIB),
                Some(80 * MIB),
                Some(60 * MIB),
                Some(60 * MIB),
                Some(60 * MIB),
            ],
            persisted_bytes_per_sample: Some(12.0),
            peak_rss: Some(700 * MIB),
            peak_ingest_rss: Some(680 * MIB),
            samples_per_cpu_s: Some(400_000.0),
            query_medians_ms: vec![Some(10.0), Some(0.5), Some(4.0), None],
            restart_s: Some(0.4),
        }
    }

    fn tidemark() -> Figures {
        Figures {
            disk: [
                Some(50 * MIB),
                Some(80 * MIB),
                Some(90 * MIB),
                Some(30 * MIB),
                None,
            ],
            persisted_bytes_per_sample: Some(6.0),
            peak_rss: Some(800 * MIB),
            peak_ingest_rss: Some(340 * MIB),
            samples_per_cpu_s: Some(600_000.0),
            query_medians_ms: vec![Some(5.0), Some(0.7), Some(4.4), Some(1.0)],
            restart_s: Some(3.0),
        }
    }

    fn line<'a>(md: &'a str, start: &str) -> &'a str {
        md.lines()
            .find(|l| l.starts_with(start))
            .unwrap_or_else(|| panic!("no line starting {start:?} in\n{md}"))
    }

    #[test]
    fn section_reads_each_target_as_a_ratio_with_met_or_missed() {
        let names: Vec<String> = ["cpu", "load1 regex", "uptime", "only tidemark"]
            .map(String::from)
            .to_vec();
        let md = section(Some(&tidemark()), Some(&vm()), &names);
        assert_eq!(
            line(&md, "| disk (a)"),
            "| disk (a): peak during ingest (MiB) | 50.00 | 100.00 | 0.50x | <= 1.0x | met |"
        );
        // Equal is met (<=).
        assert!(line(&md, "| disk (b)").ends_with("| 1.00x | <= 1.0x | met |"));
        assert!(line(&md, "| disk (c)").ends_with("| 1.50x | <= 1.0x | **missed** |"));
        assert!(line(&md, "| disk (e)").ends_with("| n/a | 60.00 | n/a | <= 1.0x | n/a |"));
        assert!(line(&md, "| persisted bytes").ends_with("| 0.50x | <= 0.5x | met |"));
        assert!(line(&md, "| peak RSS over").contains("| 1.14x | <= 1.0x | **missed** |"));
        assert!(line(&md, "| peak RSS during").contains("| 0.50x | <= 0.5x | met |"));
        assert_eq!(
            line(&md, "| samples per"),
            "| samples per server CPU-second | 600000 | 400000 | 1.50x | >= 2.0x | **missed** |"
        );
        // Geomean over the three queries both answered: (5*0.7*4.4)^(1/3)
        // vs (10*0.5*4)^(1/3), ratio (15.4/20)^(1/3) = 0.917.
        assert!(
            line(&md, "| query latency").starts_with(
                "| query latency, geomean of medians (ms, 3 queries both answered) | 2.49 | 2.71 | 0.92x |"
            ),
            "{md}"
        );
        assert!(line(&md, "| restart").ends_with("| 7.50x | <= 0.5x | **missed** |"));
        assert!(md.contains("Met 5 of 10 targets"), "{md}");
        // 0.7 vs 0.5 is 1.4x (listed); 4.4 vs 4.0 is 1.1x (not listed).
        assert!(
            md.contains("- `load1 regex`: 0.70 vs 0.50 ms (1.40x)"),
            "{md}"
        );
        assert!(!md.contains("`uptime`"), "{md}");
        assert!(!md.contains("`only tidemark`"), "{md}");
    }

    #[test]
    fn section_lists_slow_queries_slowest_first_or_says_none() {
        let names: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
        let mut t = tidemark();
        t.query_medians_ms = vec![Some(13.0), Some(5.0), Some(4.0)];
        let mut v = vm();
        v.query_medians_ms = vec![Some(10.0), Some(1.0), Some(4.0)];
        let md = section(Some(&t), Some(&v), &names);
        let b = md.find("- `b`").unwrap();
        let a = md.find("- `a`").unwrap();
        assert!(b < a, "{md}");
        assert!(!md.contains("- `c`"));
        t.query_medians_ms = vec![Some(1.0), Some(1.0), Some(1.0)];
        let md = section(Some(&t), Some(&v), &names);
        assert!(md.contains("No query is slower than 1.2x"), "{md}");
    }

    #[test]
    fn section_without_victoriametrics_says_so_instead_of_ratios() {
        let md = section(Some(&tidemark()), None, &[]);
        assert!(md.contains("VictoriaMetrics was not run"), "{md}");
        assert!(!md.contains("| target |"), "{md}");
        let md = section(None, Some(&vm()), &[]);
        assert!(md.contains("Tidemark was not run"), "{md}");
    }
}
