//! Selector benchmarks over a node_exporter-shaped fleet (instances x 50
//! metrics x 5 devices; 200k series, or a smoke size under `cargo test`):
//! the head through `Db::querier` and a block written from the same series.
//! Cases: one metric of a fifth of the instances by regex (a small
//! positive list against a wide regex), one instance's series of one metric
//! (equalities), the label values of `device` for one metric, and the label
//! sets of one metric (the series API's path).
//!
//! Run: `cargo bench --bench selector`. `TIDEMARK_BENCH_INSTANCES` scales it.

// `criterion_group!` generates an undocumented `pub fn`.
#![allow(missing_docs)]

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use tidemark::model::{Labels, MatchOp, Matcher, Sample};
use tidemark::storage::block::{Block, BlockMeta, BlockWriter};
use tidemark::storage::chunk::XorAppender;
use tidemark::storage::{Db, Options, SeriesSamples};

const METRICS: usize = 50;
const DEVICES: usize = 5;

fn instances() -> usize {
    let smoke = !std::env::args().any(|a| a == "--bench");
    std::env::var("TIDEMARK_BENCH_INSTANCES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if smoke { 40 } else { 800 })
}

fn instance(i: usize) -> String {
    format!("node-{i:03}.example.internal:9100")
}

fn fleet(n: usize) -> Vec<Labels> {
    let mut out = Vec::with_capacity(n * METRICS * DEVICES);
    for i in 0..n {
        for m in 0..METRICS {
            for d in 0..DEVICES {
                out.push(
                    Labels::try_from_pairs([
                        ("__name__", format!("node_metric_{m:02}")),
                        ("device", format!("dev{d}")),
                        ("instance", instance(i)),
                        ("job", "node".to_string()),
                    ])
                    .unwrap(),
                );
            }
        }
    }
    out
}

fn cases() -> Vec<(&'static str, Vec<Matcher>)> {
    let name = || Matcher::eq("__name__", "node_metric_07");
    vec![
        (
            "regex_instances",
            vec![
                name(),
                Matcher::new(MatchOp::Regex, "instance", r"node-.*[05]\..*").unwrap(),
            ],
        ),
        (
            "one_instance",
            vec![
                name(),
                Matcher::eq("instance", instance(3)),
                Matcher::eq("device", "dev1"),
            ],
        ),
        ("one_metric", vec![name()]),
    ]
}

fn head(c: &mut Criterion) {
    let n = instances();
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(
        dir.path(),
        Options {
            retention_ms: 0,
            ..Options::default()
        },
    )
    .unwrap();
    let labels = fleet(n);
    for t in [0i64, 15_000] {
        for chunk in labels.chunks(10_000) {
            let batch: Vec<SeriesSamples> = chunk
                .iter()
                .map(|l| SeriesSamples {
                    created: Vec::new(),
                    histograms: Vec::new(),
                    labels: l.clone(),
                    samples: vec![Sample::new(t, 1.0)],
                })
                .collect();
            db.append(&batch).unwrap();
        }
    }
    let mut g = c.benchmark_group(format!("head_{}_series", labels.len()));
    for (name, ms) in cases() {
        g.bench_function(format!("select_{name}"), |b| {
            b.iter(|| black_box(db.querier(0, 15_000).select(&ms).len()))
        });
    }
    let ms = [Matcher::eq("__name__", "node_metric_07")];
    g.bench_function("label_values_device_of_one_metric", |b| {
        b.iter(|| black_box(db.querier(0, 15_000).label_values("device", &ms).len()))
    });
    g.finish();
}

fn block(c: &mut Criterion) {
    let n = instances();
    let dir = tempfile::tempdir().unwrap();
    let mut labels = fleet(n);
    labels.sort();
    let mut a = XorAppender::new();
    a.append(0, 1.0);
    a.append(15_000, 1.0);
    let bytes = a.bytes().to_vec();
    let path = dir.path().join("block");
    let mut w = BlockWriter::create(&path).unwrap();
    for l in &labels {
        w.add_series(l, &[(0, 15_000, bytes.as_slice())]).unwrap();
    }
    w.finish(BlockMeta::new(0, 15_001)).unwrap();
    let block = Block::open(&path, false).unwrap();
    let mut g = c.benchmark_group(format!("block_{}_series", labels.len()));
    for (name, ms) in cases() {
        g.bench_function(format!("select_{name}"), |b| {
            b.iter(|| black_box(block.select(&ms, 0, 15_000).unwrap().len()))
        });
    }
    let ms = [Matcher::eq("__name__", "node_metric_07")];
    g.bench_function("label_values_device_of_one_metric", |b| {
        b.iter(|| black_box(block.label_values("device", &ms).unwrap().len()))
    });
    g.finish();
}

criterion_group!(benches, head, block);
criterion_main!(benches);
