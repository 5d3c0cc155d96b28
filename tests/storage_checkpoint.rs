//! Head truncation plus WAL checkpoint (the hand-off the block writer will
//! use): after truncating the head at `mint` and checkpointing, a restart
//! rebuilds exactly the data at or after `mint`, for live series only, and
//! the WAL on disk shrinks to the checkpoint plus newer segments.

mod common;

use common::*;
use tidemark::model::Sample;
use tidemark::storage::wal::{FsyncPolicy, WalOptions};
use tidemark::storage::{Db, Options};

const RANGE: i64 = 1_000;

fn opts() -> Options {
    Options {
        wal: WalOptions {
            fsync: FsyncPolicy::Never,
            segment_size: 256,
            compression: true,
        },
        block_range_ms: RANGE,
        stripes: 64,
        ..Options::default()
    }
}

fn wal_files(dir: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir.join("wal"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn checkpoint_after_truncate_replays_only_live_data() {
    let dir = tempfile::tempdir().unwrap();
    let mint = 3 * RANGE;
    {
        let db = Db::open(dir.path(), opts()).unwrap();
        // "old" stops before mint; "live" spans it. Many small batches fill several segments.
        for t in (0..mint).step_by(50) {
            db.append(&[one(series_labels("old", 0), vec![Sample::new(t, t as f64)])])
                .unwrap();
        }
        for t in (0..5 * RANGE).step_by(50) {
            db.append(&[one(
                series_labels("live", 0),
                vec![Sample::new(t, t as f64)],
            )])
            .unwrap();
        }
        assert!(
            wal_files(dir.path()).len() > 3,
            "several segments: {:?}",
            wal_files(dir.path())
        );
        assert_eq!(db.truncate_head(mint), 1);
        db.checkpoint_wal(mint).unwrap();
        let files = wal_files(dir.path());
        assert!(
            files.iter().any(|f| f.starts_with("checkpoint.")),
            "{files:?}"
        );
        // Data appended after the checkpoint lands in the new segment.
        db.append(&[one(
            series_labels("live", 0),
            vec![Sample::new(5 * RANGE, 1.0)],
        )])
        .unwrap();
    }
    let db = Db::open(dir.path(), opts()).unwrap();
    let d = dump(&db);
    assert_eq!(d.len(), 1, "truncated series gone: {:?}", d.keys());
    let live = &d[&series_labels("live", 0).to_string()];
    let want: Vec<(i64, u64)> = (mint..5 * RANGE)
        .step_by(50)
        .map(|t| (t, (t as f64).to_bits()))
        .chain([(5 * RANGE, 1f64.to_bits())])
        .collect();
    assert_eq!(live, &want);
}

/// Exemplars and metric metadata through a checkpoint (no head snapshot):
/// a restart replays the exemplars of live series at or after `mint` and
/// the newest metadata of every family, from the checkpoint and the
/// segments after it.
#[test]
fn checkpoint_carries_exemplars_of_live_series_and_newest_metadata() {
    use tidemark::model::Labels;
    use tidemark::storage::{AppendExtras, ExemplarEntry, MetricMetadata};

    let dir = tempfile::tempdir().unwrap();
    let opts = Options {
        head_snapshot_on_close: false,
        ..opts()
    };
    let mint = 3 * RANGE;
    let exemplar = |metric: &str, t: i64| ExemplarEntry {
        series: series_labels(metric, 0),
        labels: Labels::try_from_pairs([("trace_id", format!("{metric}-{t}"))]).unwrap(),
        value: t as f64,
        t,
    };
    let metadata = |metric: &str, help: String| MetricMetadata {
        metric: metric.into(),
        metric_type: "gauge",
        help,
        unit: String::new(),
    };
    {
        let db = Db::open(dir.path(), opts.clone()).unwrap();
        for t in (0..5 * RANGE).step_by(50) {
            let mut batch = vec![one(series_labels("live", 0), vec![Sample::new(t, 1.0)])];
            let mut exemplars = vec![exemplar("live", t)];
            if t < mint {
                batch.push(one(series_labels("old", 0), vec![Sample::new(t, 1.0)]));
                exemplars.push(exemplar("old", t));
            }
            let extras = AppendExtras {
                exemplars,
                metadata: vec![
                    metadata("live", format!("help {}", t / RANGE)),
                    metadata("old", "gone".into()),
                ],
            };
            let (out, _) = db.append_with(&batch, &[], &extras).unwrap();
            assert_eq!(out.extras.exemplars_appended, batch.len());
        }
        assert_eq!(db.truncate_head(mint), 1);
        db.checkpoint_wal(mint).unwrap();
        assert!(wal_files(dir.path())
            .iter()
            .any(|f| f.starts_with("checkpoint.")));
        db.append_with(
            &[one(
                series_labels("live", 0),
                vec![Sample::new(5 * RANGE, 1.0)],
            )],
            &[],
            &AppendExtras {
                exemplars: vec![exemplar("live", 5 * RANGE)],
                metadata: vec![],
            },
        )
        .unwrap();
    }
    let db = Db::open(dir.path(), opts).unwrap();
    assert!(!db.open_report().head_snapshot_loaded);
    let got: Vec<(String, i64)> = db
        .exemplars()
        .select(&[], i64::MIN, i64::MAX)
        .iter()
        .map(|e| (e.labels.get("trace_id").unwrap_or("").to_string(), e.t))
        .collect();
    let want: Vec<(String, i64)> = (mint..=5 * RANGE)
        .step_by(50)
        .map(|t| (format!("live-{t}"), t))
        .collect();
    assert_eq!(got, want);
    let md = db.metadata().all();
    assert_eq!(
        md,
        vec![
            metadata("live", "help 4".into()),
            metadata("old", "gone".into())
        ]
    );
}
