//! Stream labels ([`Block::with_stream_labels`]): blocks of two HA replicas
//! holding the same series stay two series, matchers on the stream label
//! select one, label answers include it; through a block and through the
//! querier over several blocks.

use std::sync::Arc;

use super::*;

/// `fixture()` with every value shifted by `dv` and every timestamp by `dt`.
fn shifted(dt: i64, dv: f64) -> Data {
    fixture()
        .into_iter()
        .map(|(l, chunks)| {
            let chunks = chunks
                .into_iter()
                .map(|c| {
                    c.into_iter()
                        .map(|(t, v)| {
                            let v = f64::from_bits(v);
                            let v = if v.is_nan() { v } else { v + dv };
                            (t + dt, v.to_bits())
                        })
                        .collect()
                })
                .collect();
            (l, chunks)
        })
        .collect()
}

fn open(dir: &Path, data: &Data, replica: &str) -> Block {
    write_block(dir, data);
    Block::open(dir, false)
        .unwrap()
        .with_stream_labels(labels(&[("replica", replica)]))
}

fn strings(series: &[BlockSeries]) -> Vec<String> {
    series.iter().map(|s| s.labels.to_string()).collect()
}

#[test]
fn a_block_adds_its_stream_labels_and_decides_matchers_on_them() {
    let tmp = tempfile::tempdir().unwrap();
    let a = open(&tmp.path().join("a"), &fixture(), "a");
    let all = a.select(&[], i64::MIN, i64::MAX).unwrap();
    assert_eq!(all.len(), 5);
    assert!(all.iter().all(|s| s.labels.get("replica") == Some("a")));
    assert!(all.windows(2).all(|w| w[0].labels < w[1].labels));
    let re = |n: &str, v: &str| Matcher::new(MatchOp::Regex, n, v).unwrap();
    let count = |ms: &[Matcher]| a.select(ms, i64::MIN, i64::MAX).unwrap().len();
    assert_eq!(count(&[Matcher::eq("replica", "a")]), 5);
    assert_eq!(count(&[Matcher::eq("replica", "b")]), 0);
    assert_eq!(count(&[Matcher::eq("replica", "")]), 0);
    assert_eq!(count(&[Matcher::neq("replica", "")]), 5);
    assert_eq!(count(&[re("replica", "a|b"), Matcher::eq("job", "a")]), 2);
    assert_eq!(count(&[re("replica", "b|c"), Matcher::eq("job", "a")]), 0);

    let names = a.label_names(&[]).unwrap();
    assert_eq!(names, ["__name__", "env", "job", "replica"]);
    assert_eq!(
        a.label_names(&[Matcher::eq("job", "c")]).unwrap(),
        ["__name__", "job", "replica"]
    );
    assert!(a
        .label_names(&[Matcher::eq("replica", "b")])
        .unwrap()
        .is_empty());
    assert!(a
        .label_names(&[Matcher::eq("job", "zz")])
        .unwrap()
        .is_empty());
    assert_eq!(a.label_values("replica", &[]).unwrap(), ["a"]);
    assert_eq!(
        a.label_values("replica", &[Matcher::eq("job", "c")])
            .unwrap(),
        ["a"]
    );
    assert!(a
        .label_values("replica", &[Matcher::eq("job", "zz")])
        .unwrap()
        .is_empty());
    assert!(a
        .label_values("job", &[Matcher::eq("replica", "b")])
        .unwrap()
        .is_empty());
    assert_eq!(
        a.label_values("job", &[Matcher::eq("replica", "a")])
            .unwrap(),
        ["a", "b", "c"]
    );
    // Compaction reads the index's labels only.
    let raw: Vec<BlockSeries> = a.series().collect::<Result<_, _>>().unwrap();
    assert!(raw.iter().all(|s| s.labels.get("replica").is_none()));
    // Deletion decides the stream matcher too.
    assert_eq!(
        a.delete(&[Matcher::eq("replica", "b")], 0, 100_000)
            .unwrap(),
        0
    );
}

#[test]
fn a_stream_label_replaces_a_series_label_of_the_same_name() {
    let tmp = tempfile::tempdir().unwrap();
    let mut data = Data::new();
    let chunk = vec![vec![(1_000, 1f64.to_bits())]];
    data.insert(
        labels(&[("__name__", "m"), ("replica", "x")]),
        chunk.clone(),
    );
    data.insert(labels(&[("__name__", "m"), ("z", "1")]), chunk);
    let b = open(&tmp.path().join("b"), &data, "a");
    assert_eq!(
        strings(&b.select(&[], i64::MIN, i64::MAX).unwrap()),
        [r#"m{replica="a"}"#, r#"m{replica="a", z="1"}"#]
    );
    // The labels-only selection carries the stream labels alike.
    let labels: Vec<String> = b
        .select_labels(&[], i64::MIN, i64::MAX)
        .unwrap()
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(labels, [r#"m{replica="a"}"#, r#"m{replica="a", z="1"}"#]);
    assert!(b
        .select(&[Matcher::eq("replica", "x")], i64::MIN, i64::MAX)
        .unwrap()
        .is_empty());
    assert_eq!(b.label_values("replica", &[]).unwrap(), ["a"]);
}

#[test]
fn the_querier_keeps_streams_apart_and_merges_blocks_of_one_stream() {
    let tmp = tempfile::tempdir().unwrap();
    // Replica a: two blocks (the second later); replica b: one block with
    // other values and timestamps over the whole range.
    let a1 = open(&tmp.path().join("a1"), &fixture(), "a");
    let a2 = open(&tmp.path().join("a2"), &shifted(100_000, 0.0), "a");
    let b = open(&tmp.path().join("b1"), &shifted(7, 0.5), "b");
    let db = crate::storage::Db::open(tmp.path().join("db"), Default::default()).unwrap();
    db.update_blocks(vec![Arc::new(a1), Arc::new(a2), Arc::new(b)], &[]);
    let q = db.querier(i64::MIN, i64::MAX);
    let up = q.select(&[Matcher::eq("__name__", "up"), Matcher::eq("job", "a")]);
    let got: Vec<(String, Vec<(i64, f64)>)> = up
        .iter()
        .map(|s| {
            let samples = s.samples().map(|x| (x.t, x.v)).collect();
            (s.labels().to_string(), samples)
        })
        .collect();
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[0].0, r#"up{job="a", replica="a"}"#);
    assert_eq!(got[1].0, r#"up{job="a", replica="b"}"#);
    let base: Vec<(i64, u64)> = fixture()[&labels(&[("__name__", "up"), ("job", "a")])].concat();
    let want_a: Vec<(i64, u64)> = base
        .iter()
        .copied()
        .chain(base.iter().map(|&(t, v)| (t + 100_000, v)))
        .collect();
    let bits = |s: &[(i64, f64)]| -> Vec<(i64, u64)> {
        s.iter().map(|&(t, v)| (t, v.to_bits())).collect()
    };
    assert_eq!(bits(&got[0].1), want_a);
    let want_b: Vec<(i64, u64)> =
        shifted(7, 0.5)[&labels(&[("__name__", "up"), ("job", "a")])].concat();
    assert_eq!(bits(&got[1].1), want_b);

    let only_b = q.select(&[Matcher::eq("replica", "b")]);
    assert_eq!(only_b.len(), 5);
    assert!(only_b
        .iter()
        .all(|s| s.labels().get("replica") == Some("b")));
    assert_eq!(q.select(&[]).len(), 10);
    assert!(q.label_names(&[]).contains(&"replica".to_string()));
    assert_eq!(q.label_values("replica", &[]), ["a", "b"]);
    assert_eq!(
        q.label_values("replica", &[Matcher::eq("replica", "a")]),
        ["a"]
    );
}
