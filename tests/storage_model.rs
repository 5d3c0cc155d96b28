//! Model-based test: random appends, queries, deletions, compactions and
//! restarts against a simple in-memory oracle (per series a Vec of (t, v)
//! with Prometheus's append rules, tombstones, and the head's floor as
//! compaction raises it) give the same answers. Values are float samples
//! and native histograms (integer, float, stale markers), which share one
//! time order per series. The block range is 100 ms,
//! so compaction cuts blocks, merges them and truncates the head within the
//! timestamps generated.

mod common;

use std::collections::BTreeMap;

use common::*;
use proptest::prelude::*;
use tidemark::model::{
    FloatHistogram, Histogram, HistogramSample, HistogramValue, MatchOp, Matcher, Sample, Span,
    STALE_NAN,
};
use tidemark::storage::SampleError;

#[derive(Debug, Clone)]
enum Op {
    /// Entries of one batch.
    Append(Vec<Entry>),
    Query {
        matcher: usize,
        mint: i64,
        maxt: i64,
    },
    Restart,
    /// `Db::compact`: head blocks, merges, tombstone rewrites.
    Compact,
    /// `Db::delete` of the series matching matcher set `matcher` in
    /// `[mint, maxt]`.
    Delete {
        matcher: usize,
        mint: i64,
        maxt: i64,
    },
}

/// One batch entry: series index, float samples, histogram samples (by
/// [`histogram`] code).
type Entry = (usize, Vec<(i64, f64)>, Vec<(i64, u8)>);

/// Block range of the model's store (ms).
const RANGE: i64 = 100;

fn value() -> impl Strategy<Value = f64> {
    prop_oneof![
        6 => (0u8..4).prop_map(f64::from),
        1 => Just(STALE_NAN),
        1 => Just(-0.0),
        1 => any::<u64>().prop_map(f64::from_bits),
    ]
}

/// Histogram number `code`: 0..=3 integer histograms of growing counts
/// (one with a third bucket), 4 a stale marker, 5..=7 float histograms. No
/// two codes are the same value.
fn histogram(code: u8) -> HistogramValue {
    let k = u64::from(code % 4);
    let mut h = Histogram {
        schema: 0,
        count: 2 * k + 1,
        zero_count: 1,
        sum: k as f64,
        positive_spans: vec![Span {
            offset: 0,
            length: 2,
        }],
        positive_buckets: vec![k as i64, 0],
        ..Default::default()
    };
    if code == 3 {
        h.positive_spans[0].length = 3;
        h.positive_buckets.push(-(k as i64));
    }
    match code {
        4 => HistogramValue::Int(Histogram {
            sum: STALE_NAN,
            ..Default::default()
        }),
        5..=7 => {
            let mut f: FloatHistogram = h.to_float();
            f.sum += 0.25;
            HistogramValue::Float(f)
        }
        _ => HistogramValue::Int(h),
    }
}

/// A histogram's value for comparison: counts and sum by bits, non-empty
/// buckets by index (a recoded chunk adds empty buckets).
fn canon(h: &FloatHistogram) -> String {
    if h.is_stale() {
        return format!("stale {:x}", h.sum.to_bits());
    }
    let mut buckets = Vec::new();
    let mut idx = 0i64;
    let mut k = 0;
    for s in &h.positive_spans {
        idx += i64::from(s.offset);
        for _ in 0..s.length {
            if h.positive_buckets[k] != 0.0 {
                buckets.push((idx, h.positive_buckets[k]));
            }
            k += 1;
            idx += 1;
        }
    }
    format!(
        "{} {} {:x} {:?}",
        h.count,
        h.zero_count,
        h.sum.to_bits(),
        buckets
    )
}

/// A stored value: float bits or histogram code.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Val {
    F(u64),
    H(u8),
}

fn op() -> impl Strategy<Value = Op> {
    let entry = (
        0usize..6,
        proptest::collection::vec((0i64..400, value()), 0..6),
        proptest::collection::vec((0i64..400, 0u8..8), 0..4),
    );
    prop_oneof![
        6 => proptest::collection::vec(entry, 1..4).prop_map(Op::Append),
        // Mostly mint <= maxt; sometimes an empty range the other way round,
        // which must select no samples (and not panic).
        3 => (0usize..5, 0i64..400, 0i64..400, 0u8..8).prop_map(|(matcher, a, b, flip)| if flip == 0 { Op::Query { matcher, mint: a.max(b), maxt: a.min(b) } } else { Op::Query { matcher, mint: a.min(b), maxt: a.max(b) } }),
        1 => Just(Op::Restart),
        2 => Just(Op::Compact),
        1 => (0usize..5, 0i64..400, 0i64..400).prop_map(|(matcher, a, b)| Op::Delete { matcher, mint: a.min(b), maxt: a.max(b) }),
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

/// The oracle: every accepted sample per series, tombstones, and the
/// head's state that decides appends.
#[derive(Default)]
struct Model {
    /// Accepted samples per series, in time order (deleted ones included).
    series: BTreeMap<usize, Vec<(i64, Val)>>,
    /// Deleted intervals per series, clamped to the data when deleted.
    tombstones: BTreeMap<usize, Vec<(i64, i64)>>,
    /// The head refuses samples before this (persisted blocks end here).
    floor: i64,
    /// The head holds samples at or after this (compaction truncated it).
    truncated: i64,
    /// The newest sample accepted.
    max_t: Option<i64>,
}

impl Model {
    fn new() -> Self {
        Model {
            floor: i64::MIN,
            truncated: i64::MIN,
            ..Model::default()
        }
    }

    /// Prometheus's `appendableMinValidTime`: max time minus half a block
    /// range, never below the floor.
    fn min_valid(&self) -> i64 {
        self.max_t
            .map_or(self.floor, |m| (m - RANGE / 2).max(self.floor))
    }

    /// Appends with the head's rules as of `min_valid` (read once per
    /// batch): judged against the samples the head still holds; a sample
    /// identical to one held, at any time, is accepted silently.
    fn append(&mut self, i: usize, t: i64, v: Val, min_valid: i64) -> Result<bool, SampleError> {
        let truncated = self.truncated;
        let s = self.series.entry(i).or_default();
        let head_last = s.last().filter(|x| x.0 >= truncated).map(|x| x.0);
        match head_last {
            Some(lt) if t <= lt => match s.iter().find(|x| x.0 == t && t >= truncated) {
                Some(&(_, sv)) if sv == v => Ok(false),
                Some(_) => Err(SampleError::DuplicateSample { t }),
                None if t < min_valid => Err(SampleError::TooOld {
                    t,
                    min_valid_t: min_valid,
                }),
                None => Err(SampleError::OutOfOrder { t, last_t: lt }),
            },
            _ if t < min_valid => Err(SampleError::TooOld {
                t,
                min_valid_t: min_valid,
            }),
            _ => {
                s.push((t, v));
                self.max_t = Some(self.max_t.map_or(t, |m| m.max(t)));
                Ok(true)
            }
        }
    }

    /// Compaction as `Db::compact` cuts the head: while the head spans more
    /// than 1.5 block ranges, its oldest range becomes a block and the head
    /// is truncated there.
    fn compact(&mut self) {
        loop {
            let truncated = self.truncated;
            let head_min = self
                .series
                .values()
                .flat_map(|s| s.iter().map(|x| x.0))
                .filter(|&t| t >= truncated)
                .min();
            let (Some(min_t), Some(max_t)) = (head_min, self.max_t) else {
                return;
            };
            if max_t - min_t <= RANGE / 2 * 3 {
                return;
            }
            let maxt = min_t.div_euclid(RANGE) * RANGE + RANGE;
            self.floor = self.floor.max(maxt);
            self.truncated = self.truncated.max(maxt);
        }
    }

    fn delete(&mut self, matcher: usize, mint: i64, maxt: i64) {
        let ms = matchers(matcher);
        for (i, s) in &self.series {
            if !ms
                .iter()
                .all(|m| m.matches(labels(*i).get(m.name()).unwrap_or("")))
            {
                continue;
            }
            let (Some(first), Some(last)) = (s.first(), s.last()) else {
                continue;
            };
            if first.0 <= maxt && last.0 >= mint {
                let iv = (mint.max(first.0), maxt.min(last.0));
                self.tombstones.entry(*i).or_default().push(iv);
            }
        }
    }

    fn visible(&self, i: usize) -> impl Iterator<Item = &(i64, Val)> {
        let ts = self.tombstones.get(&i);
        self.series[&i]
            .iter()
            .filter(move |x| !ts.is_some_and(|ts| ts.iter().any(|&(a, b)| x.0 >= a && x.0 <= b)))
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn prop_db_matches_oracle(ops in proptest::collection::vec(op(), 1..40)) {
        let dir = tempfile::tempdir().unwrap();
        let open = |dir: &std::path::Path| {
            tidemark::storage::Db::open(
                dir,
                tidemark::storage::Options {
                    block_range_ms: RANGE,
                    retention_ms: 0,
                    ..options(tidemark::storage::wal::FsyncPolicy::Never)
                },
            )
            .unwrap()
        };
        let mut db = open(dir.path());
        let mut model = Model::new();
        for op in ops {
            match op {
                Op::Append(entries) => {
                    let batch: Vec<_> = entries
                        .iter()
                        .map(|(i, s, h)| tidemark::storage::SeriesSamples { created: Vec::new(),
                            labels: labels(*i),
                            samples: s.iter().map(|&(t, v)| Sample::new(t, v)).collect(),
                            histograms: h.iter().map(|&(t, c)| HistogramSample { t, h: histogram(c) }).collect(),
                        })
                        .collect();
                    let out = db.append(&batch).unwrap();
                    let (mut appended, mut dups, mut rejected) = (0, 0, Vec::new());
                    let min_valid = model.min_valid();
                    // Per entry: floats first, then histograms (as storage).
                    for (bi, (i, s, h)) in entries.iter().enumerate() {
                        let vals = s.iter().enumerate().map(|(j, &(t, v))| (false, j, t, Val::F(v.to_bits())))
                            .chain(h.iter().enumerate().map(|(j, &(t, c))| (true, j, t, Val::H(c))));
                        for (hist, j, t, v) in vals {
                            match model.append(*i, t, v, min_valid) {
                                Ok(true) => appended += 1,
                                Ok(false) => dups += 1,
                                Err(e) => rejected.push((bi, hist, j, e)),
                            }
                        }
                    }
                    prop_assert_eq!(out.appended, appended);
                    prop_assert_eq!(out.duplicates, dups);
                    let mut got: Vec<_> = out
                        .rejected
                        .into_iter()
                        .map(|r| (r.series, r.kind == tidemark::storage::SampleKind::Histogram, r.sample, r.error))
                        .collect();
                    got.sort_by_key(|r| (r.0, r.1, r.2));
                    prop_assert_eq!(got, rejected);
                }
                Op::Query { matcher, mint, maxt } => {
                    let ms = matchers(matcher);
                    let got: Vec<(String, Vec<(i64, String)>)> = db
                        .querier(mint, maxt)
                        .select(&ms)
                        .iter()
                        .map(|s| {
                            let mut v: Vec<(i64, String)> = s.samples().map(|x| (x.t, format!("f{:x}", x.v.to_bits()))).collect();
                            // The collecting read the engine uses yields the same.
                            let collected: Vec<(i64, String)> = s.samples_vec().iter().map(|x| (x.t, format!("f{:x}", x.v.to_bits()))).collect();
                            assert_eq!(collected, v, "samples_vec of {}", s.labels());
                            v.extend(s.histograms().map(|(t, h)| (t, canon(&h))));
                            v.sort_by_key(|x| x.0);
                            (s.labels().to_string(), v)
                        })
                        .filter(|(_, v): &(String, Vec<_>)| !v.is_empty())
                        .collect();
                    let show = |v: &Val| match v {
                        Val::F(bits) => format!("f{bits:x}"),
                        Val::H(c) => canon(&histogram(*c).to_float()),
                    };
                    let mut want: Vec<(String, Vec<(i64, String)>)> = model
                        .series
                        .keys()
                        .filter(|i| ms.iter().all(|m| m.matches(labels(**i).get(m.name()).unwrap_or(""))))
                        .map(|i| (labels(*i).to_string(), model.visible(*i).filter(|x| x.0 >= mint && x.0 <= maxt).map(|x| (x.0, show(&x.1))).collect()))
                        .filter(|(_, v): &(String, Vec<_>)| !v.is_empty())
                        .collect();
                    want.sort();
                    let mut got = got;
                    got.sort();
                    prop_assert_eq!(got, want);
                    // Label values agree with the oracle's series (any time).
                    // A series whose data is all deleted may still be listed
                    // until compaction rewrites it away (as in Prometheus);
                    // without deletions the lists are equal.
                    let q = db.querier(i64::MIN, i64::MAX);
                    let names_of = |keep: &dyn Fn(usize) -> bool| {
                        let mut n: Vec<String> = model.series.keys().filter(|i| keep(**i)).map(|i| labels(*i).get("__name__").unwrap().to_string()).collect();
                        n.sort();
                        n.dedup();
                        n
                    };
                    let visible = names_of(&|i| model.visible(i).next().is_some());
                    let stored = names_of(&|i| !model.series[&i].is_empty());
                    let got = q.label_values("__name__", &[]);
                    if model.tombstones.is_empty() {
                        prop_assert_eq!(got, visible);
                    } else {
                        prop_assert!(visible.iter().all(|n| got.contains(n)), "{:?} lacks some of {:?}", got, visible);
                        prop_assert!(got.iter().all(|n| stored.contains(n)), "{:?} lists names never stored ({:?})", got, stored);
                    }
                }
                Op::Restart => {
                    drop(db);
                    db = open(dir.path());
                    // The floor comes back from the blocks on disk (a range
                    // whose data was all deleted wrote no block).
                    model.floor = db.blocks().iter().map(|b| b.max_time).max().unwrap_or(i64::MIN);
                }
                Op::Compact => {
                    db.compact().unwrap();
                    model.compact();
                    let blocks_end = db.blocks().iter().map(|b| b.max_time).max();
                    prop_assert!(blocks_end.unwrap_or(i64::MIN) <= model.floor, "blocks past the floor: {:?}", db.blocks());
                }
                Op::Delete { matcher, mint, maxt } => {
                    db.delete(&matchers(matcher), mint, maxt).unwrap();
                    model.delete(matcher, mint, maxt);
                }
            }
        }
    }
}
