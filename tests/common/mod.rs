//! Helpers shared by the storage integration tests.
#![allow(dead_code)]

pub(crate) mod api;
pub(crate) mod crash;
pub(crate) mod http;
pub(crate) mod proc;
pub(crate) mod weed;

use std::collections::BTreeMap;
use std::path::Path;

use tidemark::model::{Labels, Sample};
use tidemark::storage::wal::{FsyncPolicy, WalOptions};
use tidemark::storage::{Db, Options, SeriesSamples};

/// Options with a given fsync policy and small stripes (tests create few series).
pub(crate) fn options(fsync: FsyncPolicy) -> Options {
    Options {
        wal: WalOptions {
            fsync,
            ..WalOptions::default()
        },
        stripes: 64,
        ..Options::default()
    }
}

pub(crate) fn open(dir: &Path) -> Db {
    Db::open(dir, options(FsyncPolicy::Never)).expect("open db")
}

/// `metric{instance="i<n>", job="test"}`.
pub(crate) fn series_labels(metric: &str, n: usize) -> Labels {
    Labels::try_from_pairs([
        ("__name__", metric.to_string()),
        ("instance", format!("i{n}")),
        ("job", "test".to_string()),
    ])
    .unwrap()
}

pub(crate) fn one(labels: Labels, samples: Vec<Sample>) -> SeriesSamples {
    SeriesSamples {
        created: Vec::new(),
        labels,
        samples,
        histograms: Vec::new(),
    }
}

/// Every sample of every series, as bits, keyed by the series' text form.
pub(crate) fn dump(db: &Db) -> BTreeMap<String, Vec<(i64, u64)>> {
    db.querier(i64::MIN, i64::MAX)
        .select(&[])
        .iter()
        .map(|s| {
            (
                s.labels().to_string(),
                s.samples().map(|x| (x.t, x.v.to_bits())).collect(),
            )
        })
        .collect()
}

/// Every native histogram of the series named `metric`, as (t, count).
pub(crate) fn histogram_counts(db: &Db, metric: &str) -> Vec<(i64, f64)> {
    db.querier(i64::MIN, i64::MAX)
        .select(&[tidemark::model::Matcher::eq("__name__", metric)])
        .iter()
        .flat_map(|s| {
            s.histograms()
                .map(|(t, h)| (t, h.count))
                .collect::<Vec<_>>()
        })
        .collect()
}
