//! Timestamps at the edges of `i64` never break block arithmetic: with any
//! sample stored, compaction finishes without panicking, the head's floor
//! never jumps past real data, and a later ordinary sample is still
//! accepted and kept across a restart. (Before, one sample at `i64::MIN`
//! wrapped the block-range floor to the far future: every later write was
//! refused as too old, also after a restart.)

mod common;

use common::*;
use proptest::prelude::*;
use tidemark::model::Sample;
use tidemark::storage::wal::FsyncPolicy;
use tidemark::storage::{Db, Options};

/// 2023-11-14T22:13:20Z.
const NOW: i64 = 1_700_000_000_000;

fn opts() -> Options {
    Options {
        head_snapshot_on_close: false,
        ..options(FsyncPolicy::Never)
    }
}

fn extreme() -> impl Strategy<Value = i64> {
    prop_oneof![
        Just(i64::MIN),
        Just(i64::MIN + 1),
        Just(i64::MIN / 2),
        Just(-1),
        Just(0),
        Just(i64::MAX),
        Just(i64::MAX - 1),
        any::<i64>(),
        (-(1i64 << 53))..(1i64 << 53),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn extreme_timestamp_never_bricks_the_store(t in extreme()) {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path(), opts()).unwrap();
        let series = || series_labels("edge", 0);
        let other = || series_labels("edge", 1);
        db.append(&[one(series(), vec![Sample::new(t, 1.0)])]).unwrap();
        let first = db.append(&[one(other(), vec![Sample::new(NOW, 2.0)])]).unwrap();
        db.compact().unwrap();
        db.compact().unwrap();
        let later = db
            .append(&[one(other(), vec![Sample::new(NOW + 15_000, 3.0)])])
            .unwrap();
        if t <= NOW {
            // Nothing newer than NOW was stored: both are ordinary
            // samples, and the extreme one must not have moved the floor.
            prop_assert_eq!(first.appended, 1);
            prop_assert_eq!(later.appended, 1, "refused after compaction: {:?}", later);
        }
        db.close().unwrap();
        drop(db);
        let db = Db::open(dir.path(), opts()).unwrap();
        if t <= NOW {
            let d = dump(&db);
            let kept = &d[&other().to_string()];
            prop_assert!(kept.iter().any(|s| s.0 == NOW + 15_000), "{:?}", kept);
            let again = db
                .append(&[one(other(), vec![Sample::new(NOW + 30_000, 4.0)])])
                .unwrap();
            prop_assert_eq!(again.appended, 1, "refused after restart");
        }
    }
}
