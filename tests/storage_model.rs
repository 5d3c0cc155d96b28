//! Model-based test: random appends, queries and restarts against a simple
//! in-memory oracle (per series a Vec of (t, v) with Prometheus's append
//! rules) give the same answers.

mod common;

use std::collections::BTreeMap;

use common::*;
use proptest::prelude::*;
use tidemark::model::{MatchOp, Matcher, Sample, STALE_NAN};
use tidemark::storage::SampleError;

#[derive(Debug, Clone)]
enum Op {
    /// (series index, samples) pairs.
    Append(Vec<(usize, Vec<(i64, f64)>)>),
    Query {
        matcher: usize,
        mint: i64,
        maxt: i64,
    },
    Restart,
}

fn value() -> impl Strategy<Value = f64> {
    prop_oneof![
        6 => (0u8..4).prop_map(f64::from),
        1 => Just(STALE_NAN),
        1 => Just(-0.0),
        1 => any::<u64>().prop_map(f64::from_bits),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => proptest::collection::vec((0usize..6, proptest::collection::vec((0i64..400, value()), 1..6)), 1..4).prop_map(Op::Append),
        3 => (0usize..5, 0i64..400, 0i64..400).prop_map(|(matcher, a, b)| Op::Query { matcher, mint: a.min(b), maxt: a.max(b) }),
        1 => Just(Op::Restart),
    ]
}

/// Series i: metric `m{i % 2}`, label `k=i`, and `odd="y"` on odd i.
fn labels(i: usize) -> tidemark::model::Labels {
    let mut pairs = vec![
        ("__name__".to_string(), format!("m{}", i % 2)),
        ("k".to_string(), i.to_string()),
    ];
    if i % 2 == 1 {
        pairs.push(("odd".into(), "y".into()));
    }
    tidemark::model::Labels::try_from_pairs(pairs).unwrap()
}

fn matchers(i: usize) -> Vec<Matcher> {
    match i {
        0 => vec![],
        1 => vec![Matcher::eq("__name__", "m0")],
        2 => vec![Matcher::eq("odd", "")],
        3 => vec![Matcher::new(MatchOp::Regex, "k", "1|2|5").unwrap()],
        _ => vec![
            Matcher::new(MatchOp::NotRegex, "k", "[0-3]").unwrap(),
            Matcher::neq("__name__", "m0"),
        ],
    }
}

/// Oracle append: Prometheus's rules (no out-of-order window; the too-old
/// bound cannot trigger at these timestamps), plus Tidemark's idempotency
/// rule: a sample identical to one already stored, at any time, is accepted
/// silently.
fn oracle_append(series: &mut Vec<(i64, f64)>, t: i64, v: f64) -> Result<bool, SampleError> {
    match series.last() {
        Some(&(lt, _)) if t <= lt => match series.iter().find(|s| s.0 == t) {
            Some(&(_, sv)) if sv.to_bits() == v.to_bits() => Ok(false),
            Some(_) => Err(SampleError::DuplicateSample { t }),
            None => Err(SampleError::OutOfOrder { t, last_t: lt }),
        },
        _ => {
            series.push((t, v));
            Ok(true)
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn prop_db_matches_oracle(ops in proptest::collection::vec(op(), 1..40)) {
        let dir = tempfile::tempdir().unwrap();
        let mut db = open(dir.path());
        let mut oracle: BTreeMap<usize, Vec<(i64, f64)>> = BTreeMap::new();
        for op in ops {
            match op {
                Op::Append(entries) => {
                    let batch: Vec<_> = entries
                        .iter()
                        .map(|(i, s)| one(labels(*i), s.iter().map(|&(t, v)| Sample::new(t, v)).collect()))
                        .collect();
                    let out = db.append(&batch).unwrap();
                    let (mut appended, mut dups, mut rejected) = (0, 0, Vec::new());
                    for (bi, (i, s)) in entries.iter().enumerate() {
                        for (j, &(t, v)) in s.iter().enumerate() {
                            match oracle_append(oracle.entry(*i).or_default(), t, v) {
                                Ok(true) => appended += 1,
                                Ok(false) => dups += 1,
                                Err(e) => rejected.push((bi, j, e)),
                            }
                        }
                    }
                    prop_assert_eq!(out.appended, appended);
                    prop_assert_eq!(out.duplicates, dups);
                    let mut got: Vec<_> = out.rejected.into_iter().map(|r| (r.series, r.sample, r.error)).collect();
                    got.sort_by_key(|r| (r.0, r.1));
                    prop_assert_eq!(got, rejected);
                }
                Op::Query { matcher, mint, maxt } => {
                    let ms = matchers(matcher);
                    let got: Vec<(String, Vec<(i64, u64)>)> = db
                        .querier(mint, maxt)
                        .select(&ms)
                        .iter()
                        .map(|s| (s.labels().to_string(), s.samples().map(|x| (x.t, x.v.to_bits())).collect()))
                        .filter(|(_, v): &(String, Vec<_>)| !v.is_empty())
                        .collect();
                    let mut want: Vec<(String, Vec<(i64, u64)>)> = oracle
                        .iter()
                        .filter(|(i, _)| ms.iter().all(|m| m.matches(labels(**i).get(m.name()).unwrap_or(""))))
                        .map(|(i, s)| (labels(*i).to_string(), s.iter().filter(|x| x.0 >= mint && x.0 <= maxt).map(|x| (x.0, x.1.to_bits())).collect()))
                        .filter(|(_, v): &(String, Vec<_>)| !v.is_empty())
                        .collect();
                    want.sort();
                    let mut got = got;
                    got.sort();
                    prop_assert_eq!(got, want);
                    // Label values agree with the oracle's series (any time).
                    let q = db.querier(i64::MIN, i64::MAX);
                    let mut names: Vec<String> = oracle.iter().filter(|(_, s)| !s.is_empty()).map(|(i, _)| labels(*i).get("__name__").unwrap().to_string()).collect();
                    names.sort();
                    names.dedup();
                    prop_assert_eq!(q.label_values("__name__", &[]), names);
                }
                Op::Restart => {
                    drop(db);
                    db = open(dir.path());
                }
            }
        }
    }
}
