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
