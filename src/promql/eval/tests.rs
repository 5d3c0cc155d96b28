//! Evaluator tests over a real (temporary) database.

use crate::model::{Labels, Sample, STALE_NAN};
use crate::promql::{Engine, Value};
use crate::storage::wal::{FsyncPolicy, WalOptions};
use crate::storage::{Db, Options, SeriesSamples};

/// A series for [`db`]: label pairs and samples.
type TestSeries<'a> = (&'a [(&'a str, &'a str)], &'a [(i64, f64)]);

fn db(series: &[TestSeries<'_>]) -> (tempfile::TempDir, Db) {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(
        dir.path(),
        Options {
            wal: WalOptions {
                fsync: FsyncPolicy::Never,
                ..Default::default()
            },
            stripes: 16,
            ..Default::default()
        },
    )
    .unwrap();
    let batch: Vec<SeriesSamples> = series
        .iter()
        .map(|(l, s)| SeriesSamples {
            created: Vec::new(),
            histograms: Vec::new(),
            labels: Labels::from_static(l),
            samples: s.iter().map(|&(t, v)| Sample::new(t, v)).collect(),
        })
        .collect();
    assert!(db.append(&batch).unwrap().is_complete());
    (dir, db)
}

fn instant(db: &Db, q: &str, t: i64) -> Vec<(String, f64)> {
    match Engine::default().instant_query(db, q, t).unwrap().value {
        Value::Vector(v) => v.into_iter().map(|s| (s.labels.to_string(), s.v)).collect(),
        Value::Scalar { v, .. } => vec![("scalar".into(), v)],
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn selector_lookback_and_staleness() {
    let (_d, db) = db(&[
        (
            &[("__name__", "m"), ("job", "a")],
            &[(0, 1.0), (60_000, 2.0), (120_000, STALE_NAN)],
        ),
        (&[("__name__", "n")], &[(0, 1.0), (60_000, 2.0)]),
    ]);
    assert_eq!(
        instant(&db, "m", 60_000),
        vec![(r#"m{job="a"}"#.into(), 2.0)]
    );
    assert_eq!(
        instant(&db, "m", 119_999),
        vec![(r#"m{job="a"}"#.into(), 2.0)]
    );
    assert!(
        instant(&db, "m", 120_000).is_empty(),
        "stale marker ends the series"
    );
    // Lookback is left-open: a sample exactly 5 m old is out.
    assert!(instant(&db, "n offset 1m", 420_000).is_empty());
    assert_eq!(instant(&db, "n offset 1m", 419_999).len(), 1);
    assert_eq!(instant(&db, "n @ 60", 1_000_000), vec![("n{}".into(), 2.0)]);
}

#[test]
fn aggregation_and_binary_matching() {
    let (_d, db) = db(&[
        (
            &[("__name__", "req"), ("job", "a"), ("i", "1")],
            &[(0, 1.0)],
        ),
        (
            &[("__name__", "req"), ("job", "a"), ("i", "2")],
            &[(0, 2.0)],
        ),
        (
            &[("__name__", "req"), ("job", "b"), ("i", "1")],
            &[(0, 4.0)],
        ),
        (&[("__name__", "lim"), ("job", "a")], &[(0, 10.0)]),
        (&[("__name__", "lim"), ("job", "b")], &[(0, 20.0)]),
    ]);
    let mut got = instant(&db, "sum by (job) (req)", 0);
    got.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        got,
        vec![(r#"{job="a"}"#.into(), 3.0), (r#"{job="b"}"#.into(), 4.0)]
    );
    let mut got = instant(&db, "req / on(job) group_left lim", 0);
    got.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        got,
        vec![
            (r#"{i="1", job="a"}"#.into(), 0.1),
            (r#"{i="1", job="b"}"#.into(), 0.2),
            (r#"{i="2", job="a"}"#.into(), 0.2)
        ]
    );
    assert!(
        Engine::default()
            .instant_query(&db, "req / on(job) lim", 0)
            .is_err(),
        "many-to-one needs group_left"
    );
    assert_eq!(instant(&db, "count(req > 1)", 0), vec![("{}".into(), 2.0)]);
    assert_eq!(
        instant(&db, "scalar(sum(lim)) * 2", 0),
        vec![("scalar".into(), 60.0)]
    );
    let top = instant(&db, "topk(1, req)", 0);
    assert_eq!(top, vec![(r#"req{i="1", job="b"}"#.into(), 4.0)]);
}

#[test]
fn range_query_points_per_step() {
    let (_d, db) = db(&[(
        &[("__name__", "m")],
        &[(0, 1.0), (60_000, 2.0), (120_000, 3.0)],
    )]);
    let r = Engine::default()
        .range_query(&db, "m * 2", 0, 180_000, 60_000)
        .unwrap();
    let Value::Matrix(m) = r.value else { panic!() };
    assert_eq!(m.len(), 1);
    let pts: Vec<(i64, f64)> = m[0].samples.iter().map(|s| (s.t, s.v)).collect();
    assert_eq!(
        pts,
        vec![(0, 2.0), (60_000, 4.0), (120_000, 6.0), (180_000, 6.0)]
    );
}

fn value_of(db: &Db, q: &str, t: i64) -> f64 {
    let v = instant(db, q, t);
    assert_eq!(v.len(), 1, "{q}: {v:?}");
    v[0].1
}

#[test]
fn rate_extrapolates_to_window_start_and_corrects_counter_resets() {
    // value = t in seconds, one sample a minute: the rate is exactly 1/s.
    let regular: Vec<(i64, f64)> = (0..=10).map(|k| (k * 60_000, (k * 60) as f64)).collect();
    let (_d, db) = db(&[
        (&[("__name__", "c")], &regular),
        (
            &[("__name__", "r")],
            &[
                (60_000, 10.0),
                (120_000, 20.0),
                (180_000, 5.0),
                (240_000, 15.0),
            ],
        ),
    ]);
    assert!((value_of(&db, "rate(c[5m])", 600_000) - 1.0).abs() < 1e-12);
    // Reset at 180 s: increase = 15 - 10 + 20 = 25 over 180 s of samples,
    // extrapolated by the 60 s to the window start (within 1.1 x the
    // average interval, and before the counter would reach zero).
    let inc = value_of(&db, "increase(r[4m])", 240_000);
    assert!((inc - 25.0 * 240.0 / 180.0).abs() < 1e-9, "{inc}");
    let rate = value_of(&db, "rate(r[4m])", 240_000);
    assert!((rate - inc / 240.0).abs() < 1e-12);
    assert_eq!(value_of(&db, "resets(r[4m])", 240_000), 1.0);
    // One sample in the window: no rate.
    assert!(instant(&db, "rate(r[1m])", 240_000).is_empty());
}

#[test]
fn topk_ties_return_exactly_k_and_sort_puts_nan_last() {
    let (_d, db) = db(&[
        (&[("__name__", "t"), ("i", "a")], &[(0, 5.0)]),
        (&[("__name__", "t"), ("i", "b")], &[(0, 5.0)]),
        (&[("__name__", "t"), ("i", "c")], &[(0, f64::NAN)]),
        (&[("__name__", "t"), ("i", "d")], &[(0, 1.0)]),
    ]);
    assert_eq!(instant(&db, "topk(1, t)", 0).len(), 1);
    assert_eq!(
        instant(&db, "topk(2, t)", 0)
            .iter()
            .map(|x| x.1)
            .collect::<Vec<_>>(),
        [5.0, 5.0]
    );
    let asc: Vec<String> = instant(&db, "sort(t)", 0)
        .into_iter()
        .map(|x| x.0)
        .collect();
    assert_eq!(
        asc.last().map(String::as_str),
        Some(r#"t{i="c"}"#),
        "NaN sorts last: {asc:?}"
    );
    assert_eq!(asc.first().map(String::as_str), Some(r#"t{i="d"}"#));
    let desc: Vec<String> = instant(&db, "sort_desc(t)", 0)
        .into_iter()
        .map(|x| x.0)
        .collect();
    assert_eq!(
        desc.last().map(String::as_str),
        Some(r#"t{i="c"}"#),
        "NaN sorts last: {desc:?}"
    );
    assert_eq!(
        desc.first()
            .map(|s| s.starts_with(r#"t{i="a"}"#) || s.starts_with(r#"t{i="b"}"#)),
        Some(true)
    );
}

#[test]
fn histogram_quantile_without_inf_bucket_is_nan() {
    let (_d, db) = db(&[
        (&[("__name__", "h_bucket"), ("le", "1")], &[(0, 1.0)]),
        (&[("__name__", "h_bucket"), ("le", "2")], &[(0, 3.0)]),
        (&[("__name__", "g_bucket"), ("le", "1")], &[(0, 1.0)]),
        (&[("__name__", "g_bucket"), ("le", "2")], &[(0, 3.0)]),
        (&[("__name__", "g_bucket"), ("le", "+Inf")], &[(0, 4.0)]),
    ]);
    assert!(value_of(&db, "histogram_quantile(0.5, h_bucket)", 0).is_nan());
    // With +Inf: rank 2 falls in (1, 2]: 1 + (2 - 1) * (2 - 1) / (3 - 1) = 1.5.
    assert!((value_of(&db, "histogram_quantile(0.5, g_bucket)", 0) - 1.5).abs() < 1e-12);
}

/// The streamed aggregations (`stream.rs`) against the materialising
/// path, and proof that the streamed path is the one taken.
mod streamed {
    use std::time::{Duration, Instant};

    use proptest::prelude::*;

    use super::*;
    use crate::promql::engine::EngineOptions;
    use crate::promql::eval::Evaluator;
    use crate::promql::value::QueryResult;

    const OPS: [&str; 8] = [
        "sum", "avg", "min", "max", "count", "group", "stddev", "stdvar",
    ];
    const MODIFIERS: [&str; 5] = ["", "by (g)", "without (i)", "by (__name__)", "by (g, h)"];
    const INNERS: [&str; 16] = [
        "a",
        r#"{job="x"}"#,
        "a offset 45s",
        "a @ 200",
        "rate(a[1m])",
        "irate(a[1m])",
        "increase(a[2m])",
        "delta(a[1m])",
        "sum_over_time(a[1m])",
        "avg_over_time(a[90s])",
        "max_over_time(a[1m] offset 30s)",
        "quantile_over_time(0.3, a[2m])",
        "last_over_time({job=\"x\"}[1m])",
        "first_over_time({job=\"x\"}[1m])",
        "stddev_over_time(a[2m] @ 300)",
        "count_over_time((a[1m]))",
    ];

    /// Runs `q` as a range (or instant, `step == 0`) query with the
    /// streamed path on or off; the result and the evaluator's stats.
    fn run(
        db: &Db,
        q: &str,
        start: i64,
        end: i64,
        step: i64,
        streaming: bool,
    ) -> (Result<QueryResult, String>, u32, usize) {
        let opts = EngineOptions::default();
        let expr = Engine::parse(q).unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        let ev = Evaluator::new(&opts, db, start, end, step, deadline, None);
        ev.streaming.set(streaming);
        let r = if step == 0 {
            ev.run_instant(&expr)
        } else {
            ev.run_range(&expr)
        };
        (
            r.map_err(|e| e.to_string()),
            ev.streamed.get(),
            ev.peak_series.get(),
        )
    }

    /// A result with floats as bits, so NaNs compare equal and -0 != 0.
    fn exact(r: &Result<QueryResult, String>) -> String {
        let r = match r {
            Ok(r) => r,
            Err(e) => return format!("error {e}"),
        };
        // Every NaN alike: its sign and payload depend on which operand the
        // processor propagated (`inf - inf` gives x86's negative default
        // NaN), and the API writes every NaN as "NaN", as Prometheus does.
        let bits = |v: f64| {
            if v.is_nan() {
                "NaN".to_string()
            } else {
                format!("{:x}", v.to_bits())
            }
        };
        let points = |s: &[Sample]| {
            s.iter()
                .map(|s| format!("{}:{}", s.t, bits(s.v)))
                .collect::<Vec<_>>()
                .join(",")
        };
        let v = match &r.value {
            Value::Matrix(m) => m
                .iter()
                .map(|s| {
                    format!(
                        "{} [{}] h{}",
                        s.labels,
                        points(&s.samples),
                        s.histograms.len()
                    )
                })
                .collect::<Vec<_>>()
                .join("\n"),
            Value::Vector(v) => v
                .iter()
                .map(|s| format!("{} {} {:?}", s.labels, bits(s.v), s.h))
                .collect::<Vec<_>>()
                .join("\n"),
            other => format!("{other:?}"),
        };
        format!("{v}\nwarnings {:?}\ninfos {:?}", r.warnings, r.infos)
    }

    /// One generated series: label pairs and samples.
    type OwnedSeries = (Vec<(String, String)>, Vec<(i64, f64)>);

    /// [`OwnedSeries`] borrowed as [`db`] takes it.
    type BorrowedSeries<'a> = (Vec<(&'a str, &'a str)>, &'a [(i64, f64)]);

    /// Values that make summation order and compensation visible.
    fn value() -> impl Strategy<Value = f64> {
        prop_oneof![
            8 => (-1000i32..1000).prop_map(|x| f64::from(x) / 8.0),
            2 => prop_oneof![Just(1e16), Just(-1e16), Just(1e308), Just(-1e308), Just(0.1)],
            1 => prop_oneof![Just(f64::NAN), Just(f64::INFINITY), Just(f64::NEG_INFINITY), Just(-0.0)],
            1 => Just(STALE_NAN),
            6 => (0u32..100_000).prop_map(f64::from),
        ]
    }

    /// Up to 24 series: name `a` (or `b`, also `job="x"`), labels `g`,
    /// `h`, `i`, samples at 15 s +/- jitter with gaps over 0..600 s.
    fn dataset() -> impl Strategy<Value = Vec<OwnedSeries>> {
        prop::collection::vec(
            (
                0u8..3,
                0u8..3,
                0u8..2,
                prop::collection::vec((0i64..3, 0i64..15_000, value()), 0..45),
            ),
            1..24,
        )
        .prop_map(|series| {
            series
                .into_iter()
                .enumerate()
                .map(|(k, (name, g, h, raw))| {
                    let name = if name == 0 { "b" } else { "a" };
                    let labels = vec![
                        ("__name__".to_string(), name.to_string()),
                        ("g".to_string(), g.to_string()),
                        ("h".to_string(), h.to_string()),
                        ("i".to_string(), k.to_string()),
                        ("job".to_string(), "x".to_string()),
                    ];
                    // Slot k of 15 s: skipped (gap) when the draw says 0.
                    let mut samples: Vec<(i64, f64)> = raw
                        .into_iter()
                        .enumerate()
                        .filter(|(_, (keep, _, _))| *keep != 0)
                        .map(|(slot, (_, jitter, v))| (slot as i64 * 15_000 + jitter / 2, v))
                        .collect();
                    samples.dedup_by_key(|s| s.0);
                    (labels, samples)
                })
                .collect()
        })
    }

    fn open(data: &[OwnedSeries]) -> (tempfile::TempDir, Db) {
        let owned: Vec<BorrowedSeries<'_>> = data
            .iter()
            .map(|(l, s)| {
                (
                    l.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect(),
                    s.as_slice(),
                )
            })
            .collect();
        let series: Vec<TestSeries<'_>> = owned.iter().map(|(l, s)| (l.as_slice(), *s)).collect();
        db(&series)
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

        /// Every streamable shape answers exactly (bit for bit, warnings
        /// and infos included) as the materialising path, in range and
        /// instant queries.
        #[test]
        fn prop_streamed_aggregation_equals_materialised(data in dataset(), seed in 0usize..1000) {
            let (_dir, db) = open(&data);
            for (n, inner) in INNERS.iter().enumerate() {
                let op = OPS[(seed + n) % OPS.len()];
                let modifier = MODIFIERS[(seed / 8 + n) % MODIFIERS.len()];
                let q = format!("{op} {modifier} ({inner})");
                for (start, end, step) in [(0, 600_000, 15_000), (37_000, 590_000, 7_000), (310_000, 310_000, 0)] {
                    let (streamed, took, _) = run(&db, &q, start, end, step, true);
                    let (materialised, _, _) = run(&db, &q, start, end, step, false);
                    prop_assert_eq!(exact(&streamed), exact(&materialised), "{}", q);
                    prop_assert_eq!(took, 1, "{} was not streamed", q);
                }
            }
        }
    }

    /// All operators and modifiers over a fixed inner shape each (the
    /// property test samples combinations).
    #[test]
    fn streamed_aggregation_equals_materialised_for_every_operator() {
        let mut data = Vec::new();
        for k in 0..12i64 {
            let labels = vec![
                ("__name__".to_string(), "a".to_string()),
                ("g".to_string(), (k % 3).to_string()),
                ("h".to_string(), (k % 2).to_string()),
                ("i".to_string(), k.to_string()),
                ("job".to_string(), "x".to_string()),
            ];
            let samples = (0..40)
                .filter(|j| (j + k) % 7 != 0)
                .map(|j| {
                    let v = match (j * k) % 11 {
                        0 => 1e16,
                        1 => -1e16,
                        2 => 0.1,
                        _ => (j * 100 + k * 3) as f64,
                    };
                    (j * 15_000 + k * 100, v)
                })
                .collect();
            data.push((labels, samples));
        }
        let (_dir, db) = open(&data);
        for op in OPS {
            for modifier in MODIFIERS {
                for inner in INNERS {
                    let q = format!("{op} {modifier} ({inner})");
                    let (streamed, took, _) = run(&db, &q, 0, 600_000, 15_000, true);
                    let (materialised, _, _) = run(&db, &q, 0, 600_000, 15_000, false);
                    assert_eq!(exact(&streamed), exact(&materialised), "{q}");
                    assert_eq!(took, 1, "{q} was not streamed");
                }
            }
        }
    }

    /// The shapes left to the materialising path are not streamed.
    #[test]
    fn unstreamable_shapes_take_the_materialising_path() {
        let data = vec![(
            vec![
                ("__name__".to_string(), "a".to_string()),
                ("job".to_string(), "x".to_string()),
            ],
            vec![(0, 1.0), (15_000, 2.0)],
        )];
        let (_dir, db) = open(&data);
        for q in [
            "topk(1, a)",
            "quantile(0.5, a)",
            "sum(rate(a[1m:15s]))",
            r#"sum(rate({job="x"}[1m]))"#,
            "sum(abs(a))",
            r#"sum by (job) (rate({job=~"x"}[1m]))"#,
            "sum(a + a)",
        ] {
            let (_, took, _) = run(&db, q, 0, 60_000, 15_000, true);
            assert_eq!(took, 0, "{q}");
        }
    }

    /// The streamed path holds one series (selector) or one bounded
    /// batch (range function) at a time; the materialising path holds
    /// them all. Fails if the streamed path is not taken.
    #[test]
    fn streamed_aggregation_holds_a_bounded_number_of_series() {
        const N: usize = 2_000;
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(
            dir.path(),
            Options {
                wal: WalOptions {
                    fsync: FsyncPolicy::Never,
                    ..Default::default()
                },
                ..Default::default()
            },
        )
        .unwrap();
        let labels: Vec<Labels> = (0..N)
            .map(|k| {
                Labels::try_from_pairs([
                    ("__name__", "c".to_string()),
                    ("g", (k % 5).to_string()),
                    ("i", k.to_string()),
                ])
                .unwrap()
            })
            .collect();
        for j in 0..40i64 {
            let batch: Vec<SeriesSamples> = labels
                .iter()
                .enumerate()
                .map(|(k, l)| SeriesSamples {
                    created: Vec::new(),
                    histograms: Vec::new(),
                    labels: l.clone(),
                    samples: vec![Sample::new(j * 15_000, (j * (k as i64 % 7 + 1)) as f64)],
                })
                .collect();
            assert!(db.append(&batch).unwrap().is_complete());
        }
        // 1 s steps over 10 min: 601 steps, so a batch of the range path
        // (2^20 samples plus points) holds at most ~1 600 series.
        let (start, end, step) = (0, 600_000, 1_000);
        for q in [
            "sum by (g) (c)",
            "count(c)",
            "sum by (g) (rate(c[1m]))",
            "avg(irate(c[5m]))",
        ] {
            let (streamed, took, held) = run(&db, q, start, end, step, true);
            let (materialised, _, all) = run(&db, q, start, end, step, false);
            assert_eq!(exact(&streamed), exact(&materialised), "{q}");
            assert_eq!(took, 1, "{q} was not streamed");
            assert_eq!(all, N, "{q}: the materialising path holds every series");
            assert!(held < N * 9 / 10, "{q}: {held} series held at once of {N}");
            if !q.contains('[') {
                assert_eq!(held, 1, "{q}: a selector streams one series at a time");
            }
        }
    }
}

#[test]
fn range_kernel_work_counts_each_sample_once_per_window_it_lies_in() {
    use super::{Grid, RangeInput};
    let input = |range_ms, at| RangeInput {
        series: Vec::new(),
        range_ms,
        offset_ms: 0,
        at,
    };
    let grid = Grid {
        start: 0,
        step: 15_000,
        n: 200,
    };
    // [5m] every 15 s: a sample is in 21 windows; plus one per step.
    let rate = input(300_000, None);
    assert_eq!(
        rate.kernel_work(&grid, [240, 240].into_iter()),
        2 * (240 * 21 + 200)
    );
    // A window longer than the whole query: every step's.
    let long = input(86_400_000, None);
    assert_eq!(long.kernel_work(&grid, [10].into_iter()), 10 * 200 + 200);
    // Under `@` every step has the same window.
    let pinned = input(60_000, Some(0));
    assert_eq!(pinned.kernel_work(&grid, [5].into_iter()), 5 * 200 + 200);
    // An instant query: one window.
    let instant = Grid {
        start: 0,
        step: 0,
        n: 1,
    };
    assert_eq!(rate.kernel_work(&instant, [20].into_iter()), 21);
    // Client-sized counts saturate instead of overflowing.
    assert_eq!(
        rate.kernel_work(&grid, [usize::MAX].into_iter()),
        usize::MAX
    );
}
