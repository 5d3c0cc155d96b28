//! PromQL conformance: runs Prometheus's own `.test` scripts (v3.14.0, in
//! `../shared/promql-tests`, never copied into this repository) against the
//! engine over the real storage, as described in that directory's
//! `FORMAT.md`, and reports per file and per `inventory.tsv` category.
//!
//! * Directory: env `PROMQL_TESTS_DIR`, default `../shared/promql-tests`
//!   relative to the crate root. Absent → a failure, unless
//!   `TIDEMARK_SKIP_CONFORMANCE=1` says to skip (then one line saying so).
//! * Runs the `float`, `duration_expr` and `native_histogram` categories;
//!   `experimental` cases are skipped (not run at all).
//! * Every instant eval is also checked in range mode (§9.1) and with `@`
//!   pinned on the AST at five eval times (§9.2), as upstream does.
//! * Fails if a case fails that is not listed in
//!   `tests/promql_known_failures.txt`, or if a listed case passes (the list
//!   only shrinks). `PROMQL_UPDATE_KNOWN_FAILURES=1` rewrites the list.
//! * `PROMQL_ONLY=file.test` or `file.test:LINE` runs a subset and prints
//!   every failure reason; `PROMQL_VERBOSE=1` prints the reasons of known
//!   failures too.
//!
//! See `cargo test --test promql_conformance -- --nocapture`.

#[path = "promql_conformance/check.rs"]
mod check;
#[path = "promql_conformance/pin.rs"]
mod pin;
#[path = "promql_conformance/run.rs"]
mod run;
#[path = "promql_conformance/script.rs"]
mod script;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use tidemark::promql::{Engine, EngineOptions};

use run::{FileReport, Outcome};

const KNOWN_FAILURES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/promql_known_failures.txt"
);
const DEFAULT_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/promql-tests");

/// The categories of `inventory.tsv`, in report order.
const CATEGORIES: [&str; 4] = ["float", "duration_expr", "native_histogram", "experimental"];

/// Whether cases of `category` are run (the others are skipped).
fn is_run(category: &str) -> bool {
    matches!(category, "float" | "duration_expr" | "native_histogram")
}

/// One row of `inventory.tsv`.
struct Row {
    category: String,
    expr: String,
}

/// `file → line → row`.
fn read_inventory(dir: &Path) -> BTreeMap<String, BTreeMap<usize, Row>> {
    let path = dir.join("inventory.tsv");
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let mut inv: BTreeMap<String, BTreeMap<usize, Row>> = BTreeMap::new();
    for (i, line) in text.lines().enumerate().skip(1) {
        let cols: Vec<&str> = line.split('\t').collect();
        assert!(
            cols.len() >= 8,
            "inventory.tsv line {}: expected 8 columns",
            i + 1
        );
        let n: usize = cols[1]
            .parse()
            .unwrap_or_else(|_| panic!("inventory.tsv line {}: bad line number", i + 1));
        assert!(
            CATEGORIES.contains(&cols[3]),
            "inventory.tsv line {}: unknown category {:?}",
            i + 1,
            cols[3]
        );
        inv.entry(cols[0].to_string()).or_default().insert(
            n,
            Row {
                category: cols[3].to_string(),
                expr: cols[7..].join("\t"),
            },
        );
    }
    inv
}

/// The known-failure ids (`file:line`), comments and blanks dropped.
fn read_known_failures() -> BTreeSet<String> {
    let text = std::fs::read_to_string(KNOWN_FAILURES).unwrap_or_default();
    text.lines()
        .map(|l| l.split('#').next().unwrap_or_default().trim())
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

const KNOWN_FAILURES_HEADER: &str = "\
# PromQL conformance cases (file:line in ../shared/promql-tests) that are
# known to fail. tests/promql_conformance.rs fails when a case fails that is
# not listed here, and when a listed case passes: fix the engine, then delete
# the line. The list only shrinks. The comment after each id is the
# expression, for reading only.
#
# Regenerate (only after checking that every new entry is acceptable):
#   PROMQL_UPDATE_KNOWN_FAILURES=1 cargo test --test promql_conformance
";

/// Sort key of a `file:line` id: by file, then numerically by line.
fn id_key(id: &str) -> (String, usize) {
    match id.rsplit_once(':') {
        Some((f, l)) => (f.to_string(), l.parse().unwrap_or(usize::MAX)),
        None => (id.to_string(), usize::MAX),
    }
}

fn write_known_failures(failures: &BTreeMap<(String, usize), String>) {
    let mut out = String::from(KNOWN_FAILURES_HEADER);
    for ((file, line), expr) in failures {
        let expr: String = expr.chars().take(100).collect();
        out.push_str(&format!("{file}:{line}  # {expr}\n"));
    }
    std::fs::write(KNOWN_FAILURES, out).expect("write tests/promql_known_failures.txt");
}

/// Prints to stdout (shown with `--nocapture`, and by the harness when the
/// test fails) and to stderr (for CI logs that keep only stderr). Used for
/// the skip line, verdicts and the per-category summary.
macro_rules! say {
    ($($arg:tt)*) => {{
        let line = format!($($arg)*);
        println!("{line}");
        eprintln!("{line}");
    }};
}

#[derive(Default, Clone, Copy)]
struct Counts {
    passed: usize,
    failed: usize,
    skipped: usize,
}

#[test]
fn promql_conformance_suite() {
    let dir =
        PathBuf::from(std::env::var("PROMQL_TESTS_DIR").unwrap_or_else(|_| DEFAULT_DIR.into()));
    if !dir.join("inventory.tsv").is_file() {
        assert!(
            std::env::var("TIDEMARK_SKIP_CONFORMANCE").as_deref() == Ok("1"),
            "no inventory.tsv in {}: set PROMQL_TESTS_DIR to the promql-tests directory, or TIDEMARK_SKIP_CONFORMANCE=1 to skip",
            dir.display()
        );
        say!(
            "PROMQL-CONFORMANCE skipped (TIDEMARK_SKIP_CONFORMANCE=1): no inventory.tsv in {}",
            dir.display()
        );
        return;
    }
    let started = Instant::now();
    let inventory = read_inventory(&dir);
    let known = read_known_failures();
    let only = std::env::var("PROMQL_ONLY").ok().filter(|s| !s.is_empty());
    let (only_file, only_line) = match &only {
        Some(o) => match o.rsplit_once(':') {
            Some((f, l)) => (
                Some(f.to_string()),
                Some(l.parse::<usize>().expect("PROMQL_ONLY=file.test:LINE")),
            ),
            None => (Some(o.clone()), None),
        },
        None => (None, None),
    };
    let update = std::env::var("PROMQL_UPDATE_KNOWN_FAILURES").is_ok_and(|v| v == "1");
    let verbose = only.is_some() || std::env::var("PROMQL_VERBOSE").is_ok_and(|v| v == "1");
    assert!(
        !(update && only.is_some()),
        "PROMQL_UPDATE_KNOWN_FAILURES needs a full run: unset PROMQL_ONLY"
    );

    let mut files: Vec<(String, String)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .filter_map(|e| {
            let p = e.ok()?.path();
            let name = p.file_name()?.to_str()?.to_string();
            name.ends_with(".test").then_some(name)
        })
        .map(|name| {
            let text = std::fs::read_to_string(dir.join(&name))
                .unwrap_or_else(|e| panic!("read {name}: {e}"));
            (name, text)
        })
        .collect();
    files.sort();
    println!(
        "PROMQL-CONFORMANCE running {} files from {}: float + duration_expr + native_histogram cases; instant evals also in range mode (§9.1) and @-pinned (§9.2)",
        files.len(),
        dir.display()
    );

    // Biggest files first, so two workers finish together.
    let mut order: Vec<usize> = (0..files.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(files[i].1.len()));
    let engine = Engine::new(EngineOptions::default());
    let next = AtomicUsize::new(0);
    let reports: Mutex<Vec<Option<(FileReport, f64)>>> =
        Mutex::new((0..files.len()).map(|_| None).collect());
    let workers = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .min(files.len().max(1));
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| loop {
                let k = next.fetch_add(1, Ordering::Relaxed);
                let Some(&i) = order.get(k) else { break };
                let (name, text) = &files[i];
                let rows = inventory.get(name);
                let selected = |line: usize| -> Option<bool> {
                    if only_file.as_ref().is_some_and(|f| f != name)
                        || only_line.is_some_and(|l| l != line)
                    {
                        return None;
                    }
                    // An eval missing from the inventory runs (and is
                    // reported as a mismatch below).
                    Some(
                        rows.and_then(|r| r.get(&line))
                            .is_none_or(|r| is_run(&r.category)),
                    )
                };
                let t0 = Instant::now();
                let report = run::run_file(&engine, text, &selected);
                reports
                    .lock()
                    .expect("no worker panics while holding the lock")[i] =
                    Some((report, t0.elapsed().as_secs_f64()));
            });
        }
    });
    let reports = reports.into_inner().expect("workers finished");

    let mut by_category: HashMap<&str, Counts> = HashMap::new();
    let mut failures: BTreeMap<(String, usize), String> = BTreeMap::new();
    let mut unexpected: Vec<String> = Vec::new();
    let mut details: Vec<String> = Vec::new();
    for ((name, _), report) in files.iter().zip(reports) {
        let (report, secs) = report.expect("every file was run");
        let rows = inventory.get(name);
        let mut c = Counts::default();
        let mut seen = BTreeSet::new();
        let mut file_details = Vec::new();
        let mut record = |line: usize, outcome: &Outcome, c: &mut Counts| {
            let row = rows.and_then(|r| r.get(&line));
            let category = row.map_or("float", |r| r.category.as_str());
            let expr = row.map_or("", |r| r.expr.as_str());
            let id = format!("{name}:{line}");
            let cat = by_category.entry(category).or_default();
            match outcome {
                Outcome::Pass => {
                    c.passed += 1;
                    cat.passed += 1;
                }
                Outcome::Fail(why) => {
                    c.failed += 1;
                    cat.failed += 1;
                    let why = if row.is_none() {
                        format!("eval not in inventory.tsv; {why}")
                    } else {
                        why.clone()
                    };
                    let is_known = known.contains(&id);
                    if !is_known {
                        unexpected.push(id.clone());
                    }
                    if !is_known || verbose {
                        let tag = if is_known { "KNOWN-FAIL" } else { "FAIL" };
                        file_details.push(format!("  {tag} {id}  {expr}\n      {why}"));
                    }
                    failures.insert((name.clone(), line), expr.to_string());
                }
                Outcome::Skip | Outcome::Filtered => {
                    c.skipped += 1;
                    cat.skipped += 1;
                }
            }
        };
        for (line, outcome) in &report.cases {
            seen.insert(*line);
            record(*line, outcome, &mut c);
        }
        // Inventory rows the file did not yield (file parse error or an
        // inventory out of date).
        for (line, row) in rows.into_iter().flatten() {
            if seen.contains(line) {
                continue;
            }
            let filtered = only_file.as_ref().is_some_and(|f| f != name)
                || only_line.is_some_and(|l| l != *line);
            let outcome = if filtered || !is_run(&row.category) {
                Outcome::Skip
            } else {
                Outcome::Fail(match &report.error {
                    Some(e) => format!("file does not parse: {e}"),
                    None => "eval listed in inventory.tsv not found in the file".into(),
                })
            };
            record(*line, &outcome, &mut c);
        }
        let mut line = format!(
            "promql-conformance {name}: passed={} failed={} skipped={} ({secs:.2}s)",
            c.passed, c.failed, c.skipped
        );
        if report.histogram_series > 0 {
            line.push_str(&format!(
                " [{} series with histogram samples]",
                report.histogram_series
            ));
        }
        if let Some(e) = &report.error {
            line.push_str(&format!(" FILE ERROR: {e}"));
        }
        println!("{line}");
        details.extend(file_details);
    }

    for d in &details {
        println!("{d}");
    }
    // Listed failures that now pass, or no longer name a run case.
    let fixed: Vec<&String> = known
        .iter()
        .filter(|id| {
            let (file, line) = id_key(id);
            let in_scope = only_file.as_ref().is_none_or(|f| *f == file)
                && only_line.is_none_or(|l| l == line);
            in_scope && !failures.contains_key(&(file, line))
        })
        .collect();
    let mut verdict: Vec<String> = Vec::new();
    if update {
        write_known_failures(&failures);
        say!(
            "PROMQL-CONFORMANCE wrote {} known failures to tests/promql_known_failures.txt",
            failures.len()
        );
    } else {
        if !unexpected.is_empty() {
            let mut s = format!(
                "{} case(s) failed that are not in tests/promql_known_failures.txt; fix them, or add these lines:\n",
                unexpected.len()
            );
            for id in &unexpected {
                s.push_str(&format!("{id}\n"));
            }
            verdict.push(s);
        }
        if !fixed.is_empty() {
            let mut s = format!(
                "{} listed known failure(s) now pass or are not run; remove these lines from tests/promql_known_failures.txt:\n",
                fixed.len()
            );
            for id in &fixed {
                s.push_str(&format!("{id}\n"));
            }
            verdict.push(s);
        }
    }
    for v in &verdict {
        say!("{v}");
    }
    say!(
        "PROMQL-CONFORMANCE done in {:.2}s with {} worker threads{}",
        started.elapsed().as_secs_f64(),
        workers,
        only.as_ref()
            .map(|o| format!(" (PROMQL_ONLY={o}: partial counts)"))
            .unwrap_or_default()
    );
    if only.is_some() && by_category.values().all(|c| c.passed + c.failed == 0) {
        say!(
            "PROMQL-CONFORMANCE warning: PROMQL_ONLY={} selected no runnable eval (use file.test or file.test:LINE of an eval header)",
            only.as_deref().unwrap_or_default()
        );
    }
    // The per-category summary: always the last lines.
    for category in CATEGORIES {
        let c = by_category.get(category).copied().unwrap_or_default();
        let total: usize = inventory
            .values()
            .flat_map(|r| r.values())
            .filter(|r| r.category == category)
            .count();
        say!(
            "PROMQL-CONFORMANCE category={category} passed={} failed={} skipped={} total={total}",
            c.passed,
            c.failed,
            c.skipped
        );
    }
    assert!(
        verdict.is_empty(),
        "PromQL conformance differs from tests/promql_known_failures.txt (see above)"
    );
}

/// Unit tests of the runner's own parsing and comparison.
mod runner_tests {
    use tidemark::model::{is_stale_nan, Labels, Sample};
    use tidemark::promql::{InstantSample, QueryError, QueryResult, RangeSeries, Value};

    use crate::check::{
        check_annotations, check_error, compare_instant, compare_range, compare_range_mode,
        float_eq, hist_eq, labels_cmp,
    };
    use crate::pin::{pin_at, pinned_eval_times};
    use crate::script::{
        expand_values, parse_duration_ms, parse_eval_block, parse_file, parse_histogram,
        parse_metric, parse_scalar_line, unquote, Command, EvalKind, Slot,
    };

    fn floats(s: &str) -> Vec<Option<f64>> {
        expand_values(s)
            .unwrap()
            .into_iter()
            .map(|x| match x {
                Slot::Float(v) => Some(v),
                Slot::Gap => None,
                Slot::Histogram { .. } => panic!("histogram in {s}"),
            })
            .collect()
    }

    #[test]
    fn expand_values_arithmetic_series_expand_to_n_plus_one() {
        let cases: &[(&str, &[f64])] = &[
            ("1+2x3", &[1.0, 3.0, 5.0, 7.0]),
            ("1-2x4", &[1.0, -1.0, -3.0, -5.0, -7.0]),
            ("-1-1x2", &[-1.0, -2.0, -3.0]),
            ("-2+4x3", &[-2.0, 2.0, 6.0, 10.0]),
            ("5x2", &[5.0, 5.0, 5.0]),
            ("1x0", &[1.0]),
            // No hex in series values: `0x2` is 0 repeated.
            ("0x2", &[0.0, 0.0, 0.0]),
            ("1e3+1e-3x1", &[1000.0, 1000.001]),
            ("1_000 .5 +3 1.2e-6", &[1000.0, 0.5, 3.0, 1.2e-6]),
        ];
        for (s, want) in cases {
            let got: Vec<f64> = floats(s).into_iter().map(Option::unwrap).collect();
            assert_eq!(&got, want, "{s}");
        }
    }

    #[test]
    fn expand_values_repeated_addition_is_bit_identical() {
        let got = floats("0.1+0.1x9");
        let mut v = 0.1f64;
        let mut want = vec![Some(v)];
        for _ in 0..9 {
            v += 0.1;
            want.push(Some(v));
        }
        assert_eq!(
            got.iter().map(|x| x.unwrap().to_bits()).collect::<Vec<_>>(),
            want.iter()
                .map(|x| x.unwrap().to_bits())
                .collect::<Vec<_>>()
        );
    }

    #[test]
    fn expand_values_gaps_and_stale() {
        assert_eq!(floats("_x3"), vec![None, None, None]);
        assert_eq!(floats("1 _ 2"), vec![Some(1.0), None, Some(2.0)]);
        let s = floats("1 stale");
        assert!(is_stale_nan(s[1].unwrap()));
        assert!(!is_stale_nan(floats("NaN")[0].unwrap()));
        assert_eq!(
            floats("Inf -inf +Inf")[..2],
            [Some(f64::INFINITY), Some(f64::NEG_INFINITY)]
        );
        assert_eq!(floats(""), vec![]);
    }

    #[test]
    fn expand_values_histograms_count_slots() {
        let got = expand_values(
            "1 {{schema:0 sum:5 count:4 buckets:[1 2 1]}}x2 _ {{count:1}}+{{count:2}}x1 3",
        )
        .unwrap();
        assert_eq!(got.len(), 1 + 3 + 1 + 2 + 1);
        let Slot::Histogram { h, hint_set } = &got[1] else {
            panic!("{:?}", got[1])
        };
        assert!(!hint_set);
        assert_eq!((h.schema, h.sum, h.count), (0, 5.0, 4.0));
        assert_eq!(h.positive(), vec![(0, 1.0), (1, 2.0), (2, 1.0)]);
        assert_eq!(got[7], Slot::Float(3.0));
        // `{{A}}+{{B}}x1` is A, A+B.
        let Slot::Histogram { h, .. } = &got[6] else {
            panic!("{:?}", got[6])
        };
        assert_eq!(h.count, 3.0);
    }

    #[test]
    fn parse_histogram_reads_every_key() {
        let (h, hint_set) = parse_histogram(
            "{{schema:-53 sum:-0.5 count:3 z_bucket:1 z_bucket_w:0.001 buckets:[1 0 2] offset:2 n_buckets:[4] n_offset:-1 custom_values:[0.1 0.2] counter_reset_hint:gauge}}",
        )
        .unwrap();
        assert!(hint_set);
        assert_eq!(h.schema, -53);
        assert_eq!(
            (h.sum, h.count, h.zero_count, h.zero_threshold),
            (-0.5, 3.0, 1.0, 0.001)
        );
        assert_eq!(h.positive(), vec![(2, 1.0), (3, 0.0), (4, 2.0)]);
        assert_eq!(h.negative(), vec![(-1, 4.0)]);
        assert_eq!(h.custom_values, vec![0.1, 0.2]);
        assert_eq!(
            h.counter_reset_hint,
            tidemark::model::CounterResetHint::Gauge
        );
        assert!(parse_histogram("{{}}").is_ok());
        for bad in [
            "{{sum}}",
            "{{foo:1}}",
            "{{buckets:[1 2}}",
            "{{sum:1 sum:2}}",
            "{{counter_reset_hint:x}}",
        ] {
            assert!(parse_histogram(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn hist_eq_compares_compacted_and_hint_only_when_given() {
        let (a, _) = parse_histogram("{{schema:0 sum:5 count:4 buckets:[1 0 2 1]}}").unwrap();
        let (b, _) = parse_histogram(
            "{{schema:0 sum:5 count:4 buckets:[0 1 0 2 1] offset:-1 counter_reset_hint:gauge}}",
        )
        .unwrap();
        assert!(hist_eq(&a, &b, false));
        assert!(!hist_eq(&b, &a, true), "hint given and different");
        let (c, _) = parse_histogram("{{schema:0 sum:5 count:4 buckets:[1 0 2 2]}}").unwrap();
        assert!(!hist_eq(&a, &c, false));
        let (d, _) = parse_histogram("{{schema:1 sum:5 count:4 buckets:[1 0 2 1]}}").unwrap();
        assert!(!hist_eq(&a, &d, false));
    }

    #[test]
    fn expand_values_rejects_malformed_items() {
        for s in ["0x1F", "1+", "abc", "stalex3", "1+2x", "1 + 2x3"] {
            assert!(expand_values(s).is_err(), "{s}");
        }
    }

    #[test]
    fn parse_duration_ms_accepts_prometheus_durations() {
        let cases = [
            ("0", 0),
            ("0s", 0),
            ("10s", 10_000),
            ("1m30s", 90_000),
            ("9m10s", 550_000),
            ("20s500ms", 20_500),
            ("10s53ms", 10_053),
            ("1h", 3_600_000),
            ("1d", 86_400_000),
            ("1w", 604_800_000),
            ("1y", 31_536_000_000),
            ("1111111s", 1_111_111_000),
        ];
        for (s, want) in cases {
            assert_eq!(parse_duration_ms(s), Ok(want), "{s}");
        }
        for s in ["", "1", "-1s", "1.5s", "30s1m", "1m1m", "1 s", "5x"] {
            assert!(parse_duration_ms(s).is_err(), "{s}");
        }
    }

    #[test]
    fn float_eq_follows_almost_equal() {
        let stale = tidemark::model::STALE_NAN;
        assert!(float_eq(stale, stale));
        assert!(!float_eq(stale, f64::NAN));
        assert!(!float_eq(f64::NAN, stale));
        assert!(float_eq(f64::NAN, -f64::NAN));
        assert!(!float_eq(f64::NAN, 1.0));
        assert!(float_eq(f64::INFINITY, f64::INFINITY));
        assert!(!float_eq(f64::INFINITY, f64::NEG_INFINITY));
        assert!(!float_eq(f64::INFINITY, f64::MAX));
        assert!(float_eq(0.0, -0.0));
        // An expected 0 needs (almost) exactly 0.
        assert!(!float_eq(1e-17, 0.0));
        assert!(!float_eq(0.0, 1e-300));
        assert!(float_eq(0.0, 1e-320));
        // Relative to the sum of magnitudes.
        assert!(float_eq(1.0, 1.0 + 1e-7));
        assert!(!float_eq(1.0, 1.0 + 1e-5));
        assert!(float_eq(1e300, 1e300 * (1.0 + 1e-7)));
        assert!(float_eq(f64::MAX, f64::MAX * (1.0 - 1e-9)));
        assert!(!float_eq(1.0, -1.0));
    }

    #[test]
    fn parse_metric_handles_quotes_keywords_and_names() {
        let l = parse_metric(r#"http_requests{job="api", instance="0",}"#).unwrap();
        assert_eq!(
            l,
            Labels::from_static(&[
                ("__name__", "http_requests"),
                ("instance", "0"),
                ("job", "api")
            ])
        );
        assert_eq!(parse_metric("{}").unwrap(), Labels::empty());
        assert_eq!(
            parse_metric("fill").unwrap(),
            Labels::from_static(&[("__name__", "fill")])
        );
        assert_eq!(
            parse_metric(r#"{"my.metric", "label.x"='a\'b'}"#).unwrap(),
            Labels::from_static(&[("__name__", "my.metric"), ("label.x", "a'b")])
        );
        assert_eq!(
            parse_metric(r#"m{a="x\ny\u00e9\x41", b=`raw\n`}"#).unwrap(),
            Labels::from_static(&[("__name__", "m"), ("a", "x\nyéA"), ("b", "raw\\n")])
        );
        assert!(parse_metric(r#"m{a=~"x"}"#).is_err());
        assert!(parse_metric(r#"m{a="x"} extra"#).is_err());
    }

    #[test]
    fn parse_file_splits_commands_and_blocks() {
        let text = "# comment\nload 1m\n  a{job=\"x y\"} 0+1x3\n\neval instant at 1m30s sum(a) # not a comment\n  {} 1\n\neval_fail range from 0 to 2m step 1m a\n  expected_fail_message boom\n\nclear\n";
        let cmds = parse_file(text).unwrap();
        assert_eq!(cmds.len(), 4);
        let Command::Eval(e) = &cmds[1] else { panic!() };
        assert_eq!(e.line, 5);
        assert_eq!(e.kind, EvalKind::Instant { t: 90_000 });
        assert_eq!(e.expr, "sum(a) # not a comment");
        let exp = parse_eval_block(e).unwrap();
        assert_eq!(exp.series.len(), 1);
        let Command::Eval(f) = &cmds[2] else { panic!() };
        assert_eq!(
            f.kind,
            EvalKind::Range {
                start: 0,
                end: 120_000,
                step: 60_000
            }
        );
        let exp = parse_eval_block(f).unwrap();
        assert!(exp.fail.unwrap().matches("boom"));
        assert!(parse_file("bogus\n").is_err());
    }

    #[test]
    fn parse_eval_block_reads_expectations() {
        let text = "eval instant at 0 x\n  expect warn msg:  PromQL warning: a\n  expect no_info\n  expect ordered\n  x{a=\"1\"} 1\n  x{a=\"2\"} 2\n\neval instant at 0 y\n  0x1F\n\neval instant at 0 y\n  1\n  2\n\neval instant at 0 y\n  expect warn\n  expect no_warn\n";
        let cmds = parse_file(text).unwrap();
        let block = |i: usize| match &cmds[i] {
            Command::Eval(e) => parse_eval_block(e),
            _ => panic!(),
        };
        let e = block(0).unwrap();
        assert!(e.warn[0].matches("PromQL warning: a"));
        assert!(e.no_info && e.ordered);
        assert_eq!(e.series[1].pos, 2);
        assert_eq!(block(1).unwrap().scalar, Some(31.0));
        assert!(block(2).is_err(), "a scalar line ends the block");
        assert!(block(3).is_err(), "warn and no_warn conflict");
        assert_eq!(parse_scalar_line("-Inf"), Some(f64::NEG_INFINITY));
        assert_eq!(parse_scalar_line("0.00001234"), Some(0.00001234));
        assert_eq!(parse_scalar_line("x"), None);
        assert_eq!(unquote(r#""a\"b""#).unwrap(), "a\"b");
        assert_eq!(unquote("` Foo `").unwrap(), " Foo ");
    }

    #[test]
    fn labels_cmp_is_pairwise_then_length() {
        let a = Labels::from_static(&[("a", "1")]);
        let ab = Labels::from_static(&[("a", "1"), ("b", "1")]);
        let b = Labels::from_static(&[("b", "0")]);
        assert!(labels_cmp(&a, &ab).is_lt());
        assert!(labels_cmp(&ab, &b).is_lt());
        assert!(labels_cmp(&b, &b).is_eq());
    }

    /// The expectations of the first eval in `text`.
    fn exp(text: &str) -> crate::script::Expectations {
        let cmds = parse_file(text).unwrap();
        match &cmds[0] {
            Command::Eval(e) => parse_eval_block(e).unwrap(),
            _ => panic!("first command is not an eval"),
        }
    }

    fn vector(samples: &[(&[(&str, &str)], f64)]) -> Value {
        Value::Vector(
            samples
                .iter()
                .map(|(l, v)| InstantSample {
                    labels: Labels::from_static(l),
                    t: 0,
                    v: *v,
                    h: None,
                })
                .collect(),
        )
    }

    #[test]
    fn load_appends_slot_i_at_i_times_interval_through_storage() {
        let storage = crate::run::Storage::open();
        let lines = |v: &[&str]| -> Vec<(usize, String)> {
            v.iter()
                .enumerate()
                .map(|(i, s)| (i + 1, s.to_string()))
                .collect()
        };
        let mut hist = std::collections::HashSet::new();
        crate::run::load(
            &storage.db,
            30_000,
            &lines(&[
                "a 9 9",
                "a 1 _ 2 stale",
                "h 1 {{schema:0 sum:1 count:1}} 3",
                "h@st _ -1s _",
                "empty",
            ]),
            false,
            &mut hist,
        )
        .unwrap();
        // A later load is additive and starts again at t=0.
        crate::run::load(
            &storage.db,
            60_000,
            &lines(&["a _x2 5", "b 0+1x1"]),
            false,
            &mut hist,
        )
        .unwrap();
        let read = |name: &str| -> Vec<(i64, u64)> {
            let q = storage.db.querier(i64::MIN, i64::MAX);
            let series = q.select(&[tidemark::model::Matcher::eq("__name__", name)]);
            assert!(series.len() <= 1);
            series
                .iter()
                .flat_map(|s| {
                    s.samples()
                        .map(|p| (p.t, p.v.to_bits()))
                        .collect::<Vec<_>>()
                })
                .collect()
        };
        let b = |v: f64| v.to_bits();
        assert_eq!(
            read("a"),
            vec![
                (0, b(1.0)),
                (60_000, b(2.0)),
                (90_000, tidemark::model::STALE_NAN_BITS),
                (120_000, b(5.0))
            ]
        );
        assert_eq!(read("h"), vec![(0, b(1.0)), (60_000, b(3.0))]);
        assert_eq!(read("b"), vec![(0, b(0.0)), (60_000, b(1.0))]);
        assert_eq!(read("empty"), vec![]);
        assert_eq!(hist.len(), 1);
        let hists = |name: &str| -> Vec<(i64, f64)> {
            let q = storage.db.querier(i64::MIN, i64::MAX);
            let series = q.select(&[tidemark::model::Matcher::eq("__name__", name)]);
            series
                .iter()
                .flat_map(|s| {
                    s.histograms()
                        .map(|(t, h)| (t, h.count))
                        .collect::<Vec<_>>()
                })
                .collect()
        };
        assert_eq!(hists("h"), vec![(30_000, 1.0)]);
        // An identical duplicate is ignored; an older or conflicting sample
        // for an existing series is refused, and the load fails.
        assert!(crate::run::load(&storage.db, 1_000, &lines(&["a 1"]), false, &mut hist).is_ok());
        assert!(crate::run::load(&storage.db, 1_000, &lines(&["a 7"]), false, &mut hist).is_err());
    }

    #[test]
    fn load_with_nhcb_derives_custom_bucket_histograms() {
        let storage = crate::run::Storage::open();
        let lines: Vec<(usize, String)> = [
            r#"m_bucket{le="0.1"} 1 2"#,
            r#"m_bucket{le="1"} 3 3"#,
            r#"m_bucket{le="+Inf"} 4 5"#,
            "m_sum 10 11",
            "m_count 4 5",
        ]
        .iter()
        .enumerate()
        .map(|(i, s)| (i + 1, s.to_string()))
        .collect();
        let mut hist = std::collections::HashSet::new();
        crate::run::load(&storage.db, 60_000, &lines, true, &mut hist).unwrap();
        let q = storage.db.querier(i64::MIN, i64::MAX);
        let series = q.select(&[tidemark::model::Matcher::eq("__name__", "m")]);
        assert_eq!(series.len(), 1);
        let got: Vec<(i64, tidemark::model::FloatHistogram)> = series[0].histograms().collect();
        assert_eq!(got.len(), 2);
        let h = &got[1].1;
        assert_eq!(
            (got[1].0, h.schema, h.count, h.sum),
            (60_000, -53, 5.0, 11.0)
        );
        assert_eq!(h.custom_values, vec![0.1, 1.0]);
        let mut h = h.clone();
        h.compact();
        assert_eq!(h.positive(), vec![(0, 2.0), (1, 1.0), (2, 2.0)]);
        // Buckets that are not cumulative fail the load.
        let bad: Vec<(usize, String)> = vec![
            (1, r#"n_bucket{le="0.1"} 5"#.to_string()),
            (2, r#"n_bucket{le="1"} 3"#.to_string()),
        ];
        assert!(crate::run::load(&storage.db, 60_000, &bad, true, &mut hist).is_err());
    }

    type Pairs<'a> = &'a [(&'a str, &'a str)];

    fn matrix(series: &[(Pairs<'_>, &[(i64, f64)])]) -> Value {
        Value::Matrix(
            series
                .iter()
                .map(|(l, pts)| RangeSeries {
                    labels: Labels::from_static(l),
                    samples: pts.iter().map(|&(t, v)| Sample::new(t, v)).collect(),
                    histograms: Vec::new(),
                })
                .collect(),
        )
    }

    #[test]
    fn compare_instant_vector_matches_as_a_set_unless_ordered() {
        let e = exp("eval instant at 0 x\n  x{a=\"1\"} 1\n  x{a=\"2\"} NaN\n");
        let a1: &[(&str, &str)] = &[("__name__", "x"), ("a", "1")];
        let a2: &[(&str, &str)] = &[("__name__", "x"), ("a", "2")];
        assert!(compare_instant(&e, &vector(&[(a2, f64::NAN), (a1, 1.0)])).is_ok());
        assert!(
            compare_instant(&e, &vector(&[(a1, 1.0)])).is_err(),
            "missing"
        );
        assert!(compare_instant(&e, &vector(&[(a1, 1.1), (a2, f64::NAN)])).is_err());
        let extra: &[(&str, &str)] = &[("a", "1")];
        let got = vector(&[(a1, 1.0), (a2, f64::NAN), (extra, 1.0)]);
        assert!(
            compare_instant(&e, &got).is_err(),
            "name dropped = other series"
        );
        let o = exp("eval instant at 0 x\n  expect ordered\n  x{a=\"1\"} 1\n  x{a=\"2\"} NaN\n");
        assert!(compare_instant(&o, &vector(&[(a1, 1.0), (a2, f64::NAN)])).is_ok());
        assert!(compare_instant(&o, &vector(&[(a2, f64::NAN), (a1, 1.0)])).is_err());
        // Wrong result types.
        assert!(compare_instant(&e, &Value::Scalar { t: 0, v: 1.0 }).is_err());
        let empty = exp("eval instant at 0 x\n");
        assert!(compare_instant(&empty, &vector(&[])).is_ok());
        assert!(compare_instant(&empty, &matrix(&[])).is_err());
        assert!(compare_instant(&empty, &Value::Scalar { t: 0, v: 1.0 }).is_err());
    }

    #[test]
    fn compare_instant_scalars_and_strings() {
        let e = exp("eval instant at 0 1\n  +Inf\n");
        assert!(compare_instant(
            &e,
            &Value::Scalar {
                t: 0,
                v: f64::INFINITY
            }
        )
        .is_ok());
        assert!(compare_instant(&e, &Value::Scalar { t: 0, v: 1.0 }).is_err());
        assert!(compare_instant(&e, &vector(&[])).is_err());
        let s = exp("eval instant at 0 \"a\"\n  expect string \" Foo \"\n");
        let got = |v: &str| Value::String { t: 0, v: v.into() };
        assert!(compare_instant(&s, &got(" Foo ")).is_ok());
        assert!(compare_instant(&s, &got("Foo")).is_err());
        assert!(compare_instant(&s, &vector(&[])).is_err());
        let none = exp("eval instant at 0 \"a\"\n");
        assert!(compare_instant(&none, &got("a")).is_err());
    }

    #[test]
    fn compare_range_places_slots_at_steps() {
        let e = exp("eval range from 0 to 4m step 1m x\n  x _ 1 2 _\n  {} 5\n");
        let x: &[(&str, &str)] = &[("__name__", "x")];
        let ok = matrix(&[(&[], &[(0, 5.0)]), (x, &[(60_000, 1.0), (120_000, 2.0)])]);
        assert!(compare_range(&e, &ok, (0, 240_000, 60_000)).is_ok());
        let shifted = matrix(&[(&[], &[(0, 5.0)]), (x, &[(120_000, 1.0), (180_000, 2.0)])]);
        assert!(compare_range(&e, &shifted, (0, 240_000, 60_000)).is_err());
        let extra = matrix(&[
            (&[], &[(0, 5.0)]),
            (x, &[(60_000, 1.0), (120_000, 2.0), (240_000, 3.0)]),
        ]);
        assert!(compare_range(&e, &extra, (0, 240_000, 60_000)).is_err());
        let unsorted = matrix(&[(x, &[(60_000, 1.0), (120_000, 2.0)]), (&[], &[(0, 5.0)])]);
        let err = compare_range(&e, &unsorted, (0, 240_000, 60_000)).unwrap_err();
        assert!(err.contains("not sorted"), "{err}");
        let too_many = exp("eval range from 0 to 1m step 1m x\n  x 1 2 3\n");
        let m = matrix(&[(x, &[(0, 1.0), (60_000, 2.0)])]);
        assert!(compare_range(&too_many, &m, (0, 60_000, 60_000)).is_err());
    }

    #[test]
    fn compare_range_mode_takes_the_point_at_t() {
        let e = exp("eval instant at 1m x\n  x 7\n");
        let x: &[(&str, &str)] = &[("__name__", "x")];
        let instant = vector(&[(x, 7.0)]);
        let range = matrix(&[(x, &[(0, 1.0), (60_000, 7.0), (120_000, 9.0)])]);
        assert!(compare_range_mode(&e, &instant, &range, 60_000).is_ok());
        let missing = matrix(&[(x, &[(0, 1.0), (120_000, 9.0)])]);
        assert!(compare_range_mode(&e, &instant, &missing, 60_000).is_err());
        let s = exp("eval instant at 1m 2\n  2\n");
        let scalar = matrix(&[(&[], &[(0, 2.0), (60_000, 2.0), (120_000, 2.0)])]);
        assert!(compare_range_mode(&s, &Value::Scalar { t: 0, v: 2.0 }, &scalar, 60_000).is_ok());
    }

    #[test]
    fn check_annotations_follows_expect_lines() {
        let res = |w: &[&str], i: &[&str]| QueryResult {
            value: Value::Vector(vec![]),
            warnings: w.iter().map(|s| s.to_string()).collect(),
            infos: i.iter().map(|s| s.to_string()).collect(),
        };
        let unchecked = exp("eval instant at 0 x\n");
        assert!(check_annotations(&unchecked, &res(&["w"], &["i"])).is_ok());
        let warn =
            exp("eval instant at 0 x\n  expect warn msg: PromQL warning: a\n  expect no_info\n");
        assert!(check_annotations(&warn, &res(&["PromQL warning: a (1:5)"], &[])).is_ok());
        assert!(
            check_annotations(&warn, &res(&[], &[])).is_err(),
            "none produced"
        );
        assert!(check_annotations(
            &warn,
            &res(&["PromQL warning: a", "PromQL warning: b"], &[])
        )
        .is_err());
        assert!(check_annotations(&warn, &res(&["PromQL warning: a"], &["i"])).is_err());
        let any = exp("eval instant at 0 x\n  expect info\n");
        assert!(check_annotations(&any, &res(&[], &["x", "y"])).is_ok());
        let re = exp("eval instant at 0 x\n  expect warn regex: quantile.*NaN\n");
        assert!(
            check_annotations(&re, &res(&["PromQL warning: quantile value is NaN"], &[])).is_ok()
        );
    }

    #[test]
    fn check_error_parse_errors_need_a_matching_text() {
        let bare = exp("eval instant at 0 x\n  expect fail\n");
        let msg = exp("eval instant at 0 x\n  expect fail msg: boom\n");
        let none = exp("eval instant at 0 x\n");
        let e = QueryError::Exec("boom".into());
        assert!(check_error(&bare, &e, true).is_ok());
        assert!(check_error(&bare, &e, false).is_err());
        assert!(check_error(&msg, &e, false).is_ok());
        assert!(check_error(&msg, &QueryError::Exec("other".into()), true).is_err());
        assert!(check_error(&none, &e, true).is_err());
    }

    fn pinned(expr: &str, t: i64) -> Option<String> {
        let e = tidemark::promql::Engine::parse(expr).unwrap();
        pin_at(&e, t).map(|p| p.to_string())
    }

    #[test]
    fn pin_at_pins_selectors_and_outermost_subqueries() {
        assert_eq!(
            pinned("sum(rate(x[5m])) + y", 600_000).unwrap(),
            "sum(rate(x[5m] @ 600.000)) + y @ 600.000"
        );
        assert_eq!(pinned("x @ 100", 600_000).unwrap(), "x @ 100.000");
        // Inside a subquery nothing is pinned, not even time().
        let p = pinned("max_over_time((time() - x)[5m:1m])", 60_000).unwrap();
        assert!(p.contains("@ 60.000"), "{p}");
        assert!(!p.contains("x @"), "{p}");
        assert_eq!(pinned("time() - x", 60_000), None);
        assert_eq!(pinned("timestamp(x)", 60_000), None);
        assert_eq!(pinned("predict_linear(x[5m], 60)", 60_000), None);
        assert_eq!(pinned("1 + 1", 0).unwrap(), "1 + 1");
        assert_eq!(pinned_eval_times(0), vec![-1000, 0, 1000]);
        assert_eq!(
            pinned_eval_times(600_000),
            vec![-6_000_000, 0, 120_000, 600_000, 6_000_000]
        );
    }
}

/// The runner's parser accepts every file, load line and eval block of the
/// suite, including those of skipped categories (so a skipped case cannot
/// hide a runner gap once its category is enabled).
#[test]
fn promql_suite_every_file_and_block_parses() {
    let dir =
        PathBuf::from(std::env::var("PROMQL_TESTS_DIR").unwrap_or_else(|_| DEFAULT_DIR.into()));
    let Ok(entries) = std::fs::read_dir(&dir) else {
        println!(
            "PROMQL-CONFORMANCE skipped parse check: no directory {}",
            dir.display()
        );
        return;
    };
    let mut errors = Vec::new();
    let mut evals = 0;
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        if !name.ends_with(".test") {
            continue;
        }
        let text = std::fs::read_to_string(e.path()).expect("read test file");
        let cmds = match script::parse_file(&text) {
            Ok(c) => c,
            Err(err) => {
                errors.push(format!("{name}: {err}"));
                continue;
            }
        };
        for cmd in &cmds {
            match cmd {
                script::Command::Load { series, .. } => {
                    for (line, s) in series {
                        if !script::is_start_timestamp_line(s) {
                            if let Err(err) = script::parse_series_line(s) {
                                errors.push(format!("{name}:{line}: {err}"));
                            }
                        }
                    }
                }
                script::Command::Eval(ev) => {
                    evals += 1;
                    if let Err(err) = script::parse_eval_block(ev) {
                        errors.push(format!("{name}:{}: {err}", ev.line));
                    }
                }
                script::Command::Clear => {}
            }
        }
    }
    assert!(errors.is_empty(), "{}", errors.join("\n"));
    let listed: usize = read_inventory(&dir).values().map(BTreeMap::len).sum();
    assert_eq!(evals, listed, "evals in the files vs rows of inventory.tsv");
}
