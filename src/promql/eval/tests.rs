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
